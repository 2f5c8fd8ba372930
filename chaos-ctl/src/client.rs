//! Connecting to a daemon: `unix:///path/to.sock` (the default, `/run/chaos/daemon.sock`).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use chaos_api::proto::chaos_daemon_client::ChaosDaemonClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = ChaosDaemonClient<Channel>;

/// Connects to the daemon at `addr`.
pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let Some(path) = addr.strip_prefix("unix://") else {
        bail!("--daemon {addr:?}: expected unix:///path/to/daemon.sock");
    };
    let path = PathBuf::from(path);
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::try_from("http://chaos-daemon.local")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    Ok(ChaosDaemonClient::new(channel))
}
