//! `--pod NS/NAME` and `--selector K=V -n NS` -> the pods to target, grouped by node, and the
//! pods skipped with the reason.
//!
//! The pods are considered in namespace and name order; a pod is skipped when it was not found,
//! is in a protected namespace, is not Running, has no node or no daemon on its node, is not
//! named like the chaos config's pod_deletion patterns (`--config`, pod_deletion only), or has
//! no container of `--container`'s name (or it has no ID yet). Of the others, the first
//! `limit` ([`Limits::of`]) are chosen and the rest skipped as over the blast radius.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chaos_api::config::wildcard_match;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use super::daemons::DaemonPod;
use crate::cli::TargetArgs;
use crate::exit::UsageError;

/// A pod chosen as a target.
#[derive(Clone, Debug)]
pub struct Chosen {
    /// `NAMESPACE/NAME`.
    pub pod: String,
    pub node: String,
    pub uid: String,
    /// With `--container NAME`: that container's ID (without the runtime prefix), the target
    /// instead of the pod.
    pub container_id: Option<String>,
}

/// A pod that is not targeted, and why.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// `NAMESPACE/NAME`.
    pub pod: String,
    pub node: Option<String>,
    pub reason: String,
}

/// What `--pod`/`--selector` resolved to.
#[derive(Debug, Default)]
pub struct Resolution {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<Skipped>,
}

/// The pod_deletion rules of the chaos config (`--config`).
pub struct DeletionRules {
    /// `experiment_types.pod_deletion.parameters.pods` (empty: any name).
    pub patterns: Vec<String>,
    /// The smaller of `parameters.max_pods` and `experiments.pod_deletion.max_pods_deleted`.
    pub max_pods: u32,
}

/// What decides which pods are chosen.
pub struct Rules<'a> {
    pub protected: &'a [String],
    pub container: Option<&'a str>,
    pub max_pods: Option<u32>,
    pub percent: Option<f64>,
    pub deletion: Option<DeletionRules>,
}

/// The pods `target` names: `--pod`s (one not found is skipped) or `--selector`'s in
/// `namespace`.
pub async fn fetch(
    client: &kube::Client,
    target: &TargetArgs,
    namespace: &str,
) -> anyhow::Result<(Vec<Pod>, Vec<Skipped>)> {
    let (mut pods, mut skipped) = (Vec::new(), Vec::new());
    if let Some(selector) = &target.selector {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .with_context(|| {
                format!("cannot list the pods of --selector {selector} in --namespace {namespace}")
            })?;
        pods = list.items;
    }
    for given in &target.pods {
        let Some((ns, name)) = given
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        else {
            return Err(UsageError(format!(
                "--pod {given:?}: expected NAMESPACE/NAME, e.g. shop/frontend-7d9f8-abcde"
            ))
            .into());
        };
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        match api
            .get_opt(name)
            .await
            .with_context(|| format!("cannot read pod {given}"))?
        {
            Some(pod) => pods.push(pod),
            None => skipped.push(Skipped {
                pod: given.clone(),
                node: None,
                reason: "not found".to_owned(),
            }),
        }
    }
    Ok((pods, skipped))
}

/// Chooses among `pods` by `rules`; `skipped` (pods not found) is kept first.
pub fn choose(
    mut pods: Vec<Pod>,
    mut skipped: Vec<Skipped>,
    daemons: &BTreeMap<String, DaemonPod>,
    rules: &Rules,
) -> Resolution {
    let key = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    pods.sort_by_key(key);
    pods.dedup_by_key(|p| key(p));
    let mut eligible = Vec::new();
    for pod in &pods {
        let (ns, name) = key(pod);
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        match eligibility(pod, &ns, &name, node.as_deref(), daemons, rules) {
            Ok(chosen) => eligible.push(chosen),
            Err(reason) => skipped.push(Skipped {
                pod: format!("{ns}/{name}"),
                node,
                reason,
            }),
        }
    }
    let (limit, why) = limit(rules, eligible.len());
    for over in eligible.split_off(limit.min(eligible.len())) {
        skipped.push(Skipped {
            pod: over.pod,
            node: Some(over.node),
            reason: format!("over the blast radius ({why})"),
        });
    }
    Resolution {
        chosen: eligible,
        skipped,
    }
}

/// The pod as a target, or why it is skipped.
fn eligibility(
    pod: &Pod,
    ns: &str,
    name: &str,
    node: Option<&str>,
    daemons: &BTreeMap<String, DaemonPod>,
    rules: &Rules,
) -> Result<Chosen, String> {
    if rules.protected.iter().any(|p| p == ns) {
        return Err(format!(
            "namespace {ns} is protected (--protected-namespaces)"
        ));
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return Err(format!("phase {phase}, not Running"));
    }
    let Some(node) = node else {
        return Err("not scheduled to a node".to_owned());
    };
    if !daemons.contains_key(node) {
        return Err(format!("no Running chaos-daemon pod on node {node}"));
    }
    if let Some(d) = &rules.deletion
        && !d.patterns.is_empty()
        && !d.patterns.iter().any(|p| wildcard_match(p, name))
    {
        return Err(format!(
            "not named like {} (experiment_types.pod_deletion.parameters.pods)",
            d.patterns.join(", ")
        ));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Err("no UID".to_owned());
    }
    let container_id = match rules.container {
        None => None,
        Some(container) => {
            let found = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|all| all.iter().find(|c| c.name == container));
            let Some(found) = found else {
                return Err(format!("no container {container}"));
            };
            match found.container_id.as_deref().filter(|id| !id.is_empty()) {
                Some(id) => Some(id.split_once("://").map_or(id, |(_, id)| id).to_owned()),
                None => return Err(format!("container {container} has no ID (not started)")),
            }
        }
    };
    Ok(Chosen {
        pod: format!("{ns}/{name}"),
        node: node.to_owned(),
        uid,
        container_id,
    })
}

/// How many of the `eligible` pods may be chosen: the smallest of `--max-pods`, `--percent` of
/// them (rounded down, at least 1) and the config's pod_deletion cap; and which set it ("none"
/// when nothing limits).
fn limit(rules: &Rules, eligible: usize) -> (usize, String) {
    let mut limit = (eligible, String::from("none"));
    let mut cap = |n: usize, why: String| {
        if n < limit.0 {
            limit = (n, why);
        }
    };
    if let Some(n) = rules.max_pods {
        cap(n as usize, format!("--max-pods {n}"));
    }
    if let Some(p) = rules.percent {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a share of a pod count, 0 to the count"
        )]
        let n = ((eligible as f64 * p / 100.0).floor() as usize).max(1);
        cap(n, format!("--percent {p} of {eligible}"));
    }
    if let Some(d) = &rules.deletion {
        cap(
            d.max_pods as usize,
            format!("pod_deletion max_pods {} (--config)", d.max_pods),
        );
    }
    limit
}

/// The resolution as a table.
pub fn table(r: &Resolution) -> String {
    let mut out = String::new();
    if !r.chosen.is_empty() {
        out += &format!(
            "{:<40} {:<20} {:<36} CONTAINER\n",
            "TARGET POD", "NODE", "UID"
        );
        for c in &r.chosen {
            out += &format!(
                "{:<40} {:<20} {:<36} {}\n",
                c.pod,
                c.node,
                c.uid,
                c.container_id.as_deref().unwrap_or("-")
            );
        }
    }
    if !r.skipped.is_empty() {
        out += &format!("{:<40} {:<20} REASON\n", "SKIPPED POD", "NODE");
        for s in &r.skipped {
            out += &format!(
                "{:<40} {:<20} {}\n",
                s.pod,
                s.node.as_deref().unwrap_or("-"),
                s.reason
            );
        }
    }
    out
}

/// The resolution as JSON: `{"targets": [...], "skipped": [...]}`.
pub fn json(r: &Resolution) -> serde_json::Value {
    json!({
        "targets": r.chosen.iter().map(|c| json!({
            "pod": c.pod, "node": c.node, "uid": c.uid, "container_id": c.container_id,
        })).collect::<Vec<_>>(),
        "skipped": r.skipped.iter().map(|s| json!({
            "pod": s.pod, "node": s.node, "reason": s.reason,
        })).collect::<Vec<_>>(),
    })
}
