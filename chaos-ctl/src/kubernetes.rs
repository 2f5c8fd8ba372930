//! Kubernetes mode: chaos-ctl finds the target pods and the chaos-daemon pods through the
//! Kubernetes API (kube-rs: `--kubeconfig`, else `$KUBECONFIG`, `~/.kube/config` or the
//! in-cluster service account) and talks to each node's daemon; the daemons never call the API.
//!
//! The parts: `pods` (`--pod`/`--selector` -> the targets per node, and the pods skipped with
//! why), `daemons` (the daemon pod of each node, reached by its pod IP or through a
//! port-forward), `dispatch` (one experiment per node, the budget split, all-or-nothing).

mod daemons;
mod dispatch;
mod pods;

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli::KubeArgs;

pub use daemons::fan_out;
pub use dispatch::experiment;

/// A client of the API server the flags (or the environment) name.
async fn client(args: &KubeArgs) -> anyhow::Result<kube::Client> {
    let options = KubeConfigOptions {
        context: args.kube_context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.kube_context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("--kube-context {context}"))?,
        (None, None) => kube::Config::infer().await.context(
            "no Kubernetes configuration: pass --kubeconfig FILE, set KUBECONFIG, or run \
             in a pod with a service account",
        )?,
    };
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}
