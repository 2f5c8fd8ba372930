//! The chaos-daemon pods of the DaemonSet: the Running pods of `--chaos-namespace` matching
//! `--daemon-selector`, one per node (by `spec.nodeName`), and how to reach each: its pod IP on
//! `--daemon-port`, the certificate checked against `--tls-server-name` (the daemons'
//! certificate names the Service, not pod IPs); or, with `--port-forward`, a listener on
//! 127.0.0.1 whose every connection is bridged to a Kubernetes port-forward to the pod (the
//! certificate checked against `localhost`, which it holds).

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Context as _;
use chaos_ctl::client::TlsFiles;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tokio::task::JoinHandle;

use crate::cli::KubeArgs;
use crate::commands::Action;
use crate::exit::UsageError;
use crate::fanout::{self, Endpoint};

/// The name the daemons' certificate is checked against through a port-forward.
const FORWARDED_NAME: &str = "localhost";

/// One node's daemon pod.
#[derive(Clone, Debug)]
pub struct DaemonPod {
    pub name: String,
    pub node: String,
    pub ip: IpAddr,
}

/// The Running daemon pods by node name. A node with two (a rolling update) keeps the first by
/// name.
pub async fn find(
    client: &kube::Client,
    args: &KubeArgs,
) -> anyhow::Result<BTreeMap<String, DaemonPod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &args.chaos_namespace);
    let params = ListParams::default()
        .labels(&args.daemon_selector)
        .fields("status.phase=Running");
    let list = api.list(&params).await.with_context(|| {
        format!(
            "cannot list the chaos-daemon pods (--chaos-namespace {}, --daemon-selector {})",
            args.chaos_namespace, args.daemon_selector
        )
    })?;
    let mut daemons = BTreeMap::new();
    let mut pods = list.items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for pod in pods {
        let name = pod.metadata.name.unwrap_or_default();
        let node = pod.spec.and_then(|s| s.node_name);
        let ip = pod
            .status
            .and_then(|s| s.pod_ip)
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        if let (Some(node), Some(ip)) = (node, ip) {
            daemons
                .entry(node.clone())
                .or_insert(DaemonPod { name, node, ip });
        }
    }
    Ok(daemons)
}

/// How daemon pods are reached; port-forward listeners live as long as this.
pub struct Reach {
    args: KubeArgs,
    api: Api<Pod>,
    listeners: Vec<JoinHandle<()>>,
}

impl Reach {
    pub fn new(client: &kube::Client, args: &KubeArgs) -> Self {
        Self {
            args: args.clone(),
            api: Api::namespaced(client.clone(), &args.chaos_namespace),
            listeners: Vec::new(),
        }
    }

    /// The address of `daemon` and the name its certificate is checked against.
    pub async fn endpoint(&mut self, daemon: &DaemonPod) -> anyhow::Result<Endpoint> {
        let label = format!(
            "{} ({}/{})",
            daemon.node, self.args.chaos_namespace, daemon.name
        );
        let port = self.args.daemon_port;
        if !self.args.port_forward {
            let host = match daemon.ip {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            };
            return Ok(Endpoint {
                label,
                addr: format!("https://{host}:{port}"),
                server_name: Some(self.args.tls_server_name.clone()),
            });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("port-forward: cannot listen on 127.0.0.1")?;
        let local = listener.local_addr()?;
        let (api, pod) = (self.api.clone(), daemon.name.clone());
        self.listeners.push(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(bridge(api.clone(), pod.clone(), port, conn));
            }
        }));
        Ok(Endpoint {
            label,
            addr: format!("https://{local}"),
            server_name: Some(FORWARDED_NAME.to_owned()),
        })
    }
}

impl Drop for Reach {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Copies between a local connection and a new port-forward to `pod`'s `port` until either
/// side closes.
async fn bridge(api: Api<Pod>, pod: String, port: u16, mut conn: tokio::net::TcpStream) {
    let mut forward = match api.portforward(&pod, &[port]).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("chaos-ctl: port-forward to pod {pod} port {port}: {e}");
            return;
        }
    };
    if let Some(mut upstream) = forward.take_stream(port) {
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    }
    let _ = forward.join().await;
}

/// Kubernetes mode's `status`, `stop`, `report --last` and `emergency-stop`: `action` on every
/// daemon pod of the DaemonSet (see [`fanout::run_on`]).
pub async fn fan_out(
    args: &KubeArgs,
    tls: &TlsFiles,
    action: &Action,
    json: bool,
) -> anyhow::Result<()> {
    let client = super::client(args).await?;
    let daemons = find(&client, args).await?;
    if daemons.is_empty() {
        return Err(UsageError(format!(
            "no Running chaos-daemon pod in namespace {} matches {} (--chaos-namespace, \
             --daemon-selector)",
            args.chaos_namespace, args.daemon_selector
        ))
        .into());
    }
    let mut reach = Reach::new(&client, args);
    let mut endpoints = Vec::new();
    for daemon in daemons.values() {
        endpoints.push(reach.endpoint(daemon).await?);
    }
    fanout::run_on(&endpoints, tls, action, json).await
}
