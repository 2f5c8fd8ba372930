//! Connecting to a daemon: `unix:///path/to.sock` (the default, `/run/chaos/daemon.sock`),
//! `https://host:port` with mutual TLS (`--ca`, `--cert`, `--key`), or `http://127.0.0.1:port`
//! for a daemon's insecure loopback listener.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chaos_api::proto::chaos_daemon_client::ChaosDaemonClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

pub type Client = ChaosDaemonClient<Channel>;

/// Client certificate files for `https://` daemons.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Connects to the daemon at `addr`.
pub async fn connect(addr: &str, tls: &TlsFiles) -> anyhow::Result<Client> {
    let channel = if let Some(path) = addr.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        // The URI is required by tonic but unused: the connector dials the socket.
        Endpoint::try_from("http://chaos-daemon.local")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
    } else if addr.starts_with("https://") {
        let read = |p: &Option<PathBuf>, flag: &str| -> anyhow::Result<Vec<u8>> {
            let p = p.as_ref().with_context(|| format!("{addr} needs {flag}"))?;
            std::fs::read(p).with_context(|| format!("{flag} {}", p.display()))
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca, "--ca")?))
            .identity(Identity::from_pem(
                read(&tls.cert, "--cert")?,
                read(&tls.key, "--key")?,
            ));
        Endpoint::try_from(addr.to_string())?
            .tls_config(config)?
            .connect()
            .await
    } else if addr.starts_with("http://") {
        Endpoint::try_from(addr.to_string())?.connect().await
    } else {
        bail!(
            "--daemon {addr:?}: expected unix:///path, https://host:port or http://127.0.0.1:port"
        );
    };
    let channel = channel.with_context(|| format!("connecting to {addr}"))?;
    Ok(ChaosDaemonClient::new(channel))
}
