//! `chaos-ctl experiment TYPE --pod/--selector ...`: one experiment per node, sent to the
//! nodes' daemons in parallel, each with that node's targets, all-or-nothing.
//!
//! The experiment is built and validated from the flags before any connection (with a stand-in
//! target); each node's message is then the same experiment with the node's targets: `target`
//! for one, `targets` (at most [`MAX_TARGETS`]) for more.
//!
//! The budget split: `--budget` and `--max-faults` are totals over all nodes, shared in
//! proportion to each node's number of targets, rounded down (the budget to the cent), the
//! remainder handed out one unit (fault or cent) at a time to the nodes with the largest
//! rounded-off fractions (ties: node name order); the shares add up to the total exactly and
//! never exceed it. A node whose share of `--max-faults` would be 0 is an error (raise it or
//! target fewer nodes). Without `--budget`, each daemon applies its config's
//! `budget.max_experiment_cost` to its node's experiment.
//!
//! If any node refuses or cannot be reached, the experiments already started on the others
//! are stopped and the command fails, listing every node's answer.

use std::collections::BTreeMap;

use chaos_api::config::ChaosConfig;
use chaos_api::experiment::ExperimentType;
use chaos_api::proto::{self, target::Kind as TargetKind};
use chaos_common::MAX_TARGETS;
use chaos_ctl::client::{self, TlsFiles};
use chaos_ctl::render;
use serde_json::json;

use super::daemons::{self, Reach};
use super::pods::{self, Chosen, DeletionRules, Rules};
use crate::cli::{ExperimentArgs, KubeArgs};
use crate::commands;
use crate::exit::{self, Refused, UsageError};
use crate::fanout::{Endpoint, FanOutFailed};
use crate::spec;

/// The target the experiment is validated with before the pods are known; never sent.
const STAND_IN_UID: &str = "00000000-0000-0000-0000-000000000000";

/// One node's share of the experiment.
struct NodeShare<'a> {
    node: String,
    targets: Vec<&'a Chosen>,
    budget: Option<f64>,
    max_faults: Option<u64>,
}

/// Resolves the pods, starts one experiment per node and prints the resolution and each
/// node's answer.
pub async fn experiment(
    mut args: ExperimentArgs,
    kube: &KubeArgs,
    tls: &TlsFiles,
    json: bool,
) -> anyhow::Result<()> {
    if args.wait {
        return Err(UsageError(
            "--wait does not work with --pod or --selector (one experiment per node); watch \
             them with `chaos-ctl --kube status`"
                .into(),
        )
        .into());
    }
    let target = std::mem::take(&mut args.target);
    args.target.pod_uid = Some(STAND_IN_UID.to_owned());
    let experiment = spec::experiment(&args).map_err(exit::usage)?;
    let deletion = match &args.pod_choice.config {
        Some(path) if args.kind == ExperimentType::PodDeletion => {
            let config = ChaosConfig::load(path)
                .map_err(|e| UsageError(format!("--config {}: {e}", path.display())))?;
            let parameters = &config.experiment_types.pod_deletion.parameters;
            Some(DeletionRules {
                patterns: parameters.pods.clone(),
                max_pods: parameters
                    .max_pods
                    .min(config.experiments.pod_deletion.max_pods_deleted),
            })
        }
        _ => None,
    };
    let protected = args.pod_choice.protected();
    let rules = Rules {
        protected: &protected,
        container: target.container.as_deref(),
        max_pods: args.pod_choice.max_pods,
        percent: args.pod_choice.percent,
        deletion,
    };

    let client = super::client(kube).await?;
    let daemons = daemons::find(&client, kube).await?;
    let (found, not_found) = pods::fetch(&client, &target, args.pod_choice.namespace()).await?;
    let resolution = pods::choose(found, not_found, &daemons, &rules);
    let mut by_node: BTreeMap<String, Vec<&Chosen>> = BTreeMap::new();
    for c in &resolution.chosen {
        by_node.entry(c.node.clone()).or_default().push(c);
    }
    let print_resolution = || {
        if !json {
            print!("{}", pods::table(&resolution));
        }
    };
    if by_node.is_empty() {
        print_resolution();
        if json {
            println!(
                "{}",
                json!({"resolution": pods::json(&resolution), "nodes": []})
            );
        }
        let why = if resolution.skipped.is_empty() {
            match &target.selector {
                Some(selector) => format!(
                    "no pod in namespace {} matches {selector}",
                    args.pod_choice.namespace()
                ),
                None => "no pod given".to_owned(),
            }
        } else {
            "every pod was skipped (the reasons are listed)".to_owned()
        };
        return Err(Refused(format!("no pod to target: {why}")).into());
    }
    // A database load is one load against one database, from one pod: one per node would
    // multiply the rate by the number of nodes.
    if args.kind == ExperimentType::DatabaseLoad && resolution.chosen.len() != 1 {
        print_resolution();
        return Err(UsageError(format!(
            "database_load runs from exactly one pod, and {} were chosen: name it with --pod or \
             add --max-pods 1",
            resolution.chosen.len()
        ))
        .into());
    }
    if let Some((node, targets)) = by_node.iter().find(|(_, t)| t.len() > MAX_TARGETS as usize) {
        print_resolution();
        return Err(UsageError(format!(
            "node {node} has {} target pods; one experiment takes at most {MAX_TARGETS} per \
             node: lower the blast radius with --max-pods or --percent",
            targets.len()
        ))
        .into());
    }
    let shares = split(&by_node, experiment.budget, experiment.max_faults)?;
    print_resolution();

    let mut reach = Reach::new(&client, kube);
    let mut endpoints = Vec::new();
    for share in &shares {
        endpoints.push(reach.endpoint(&daemons[&share.node]).await?);
    }
    let base = &experiment.to_proto();
    let dry_run = experiment.dry_run;
    let answers = futures_util::future::join_all(shares.iter().zip(&endpoints).map(
        |(share, endpoint)| async move {
            let mut c =
                client::connect_as(&endpoint.addr, tls, endpoint.server_name.as_deref()).await?;
            commands::start_spec(&mut c, node_spec(base, share), dry_run).await
        },
    ))
    .await;

    let failed = answers.iter().filter(|a| a.is_err()).count();
    // All or nothing: a node that failed leaves none started.
    let mut stopped = vec![None; answers.len()];
    if failed > 0 && !dry_run {
        for (i, (answer, endpoint)) in answers.iter().zip(&endpoints).enumerate() {
            if let Ok(r) = answer {
                stopped[i] = Some(stop(endpoint, tls, &r.id).await);
            }
        }
    }
    report(
        &shares,
        &endpoints,
        &answers,
        &stopped,
        &resolution,
        dry_run,
        json,
    );
    let worst = answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .map(exit::code)
        .min();
    match worst {
        None => Ok(()),
        Some(code) => Err(FanOutFailed {
            failed,
            total: answers.len(),
            code,
        }
        .into()),
    }
}

/// Stops experiment `id` on `endpoint`: "stopped", or why not.
async fn stop(endpoint: &Endpoint, tls: &TlsFiles, id: &str) -> String {
    let action = commands::Action::Stop { id: id.to_owned() };
    match commands::answer(
        &endpoint.addr,
        endpoint.server_name.as_deref(),
        tls,
        &action,
        true,
    )
    .await
    {
        Ok(_) => "stopped".to_owned(),
        Err(e) => format!("NOT stopped: {}", exit::text(&e)),
    }
}

/// The experiment message of one node: `base` with the node's targets and budget share.
fn node_spec(base: &proto::ExperimentSpec, share: &NodeShare) -> proto::ExperimentSpec {
    let mut targets: Vec<proto::Target> = share
        .targets
        .iter()
        .map(|c| proto::Target {
            kind: Some(match &c.container_id {
                Some(id) => TargetKind::ContainerId(id.clone()),
                None => TargetKind::PodUid(c.uid.clone()),
            }),
            pod_name: c.pod.clone(),
        })
        .collect();
    let mut spec = base.clone();
    spec.budget = share.budget;
    spec.max_faults = share.max_faults;
    // One target in `target`, several in `targets` (the message's rule).
    if targets.len() == 1 {
        spec.target = targets.pop();
        spec.targets = Vec::new();
    } else {
        spec.target = None;
        spec.targets = targets;
    }
    spec
}

/// Each node's share of the budget and the fault cap (see the module's documentation).
fn split<'a>(
    by_node: &BTreeMap<String, Vec<&'a Chosen>>,
    budget: Option<f64>,
    max_faults: Option<u64>,
) -> Result<Vec<NodeShare<'a>>, UsageError> {
    let counts: Vec<u64> = by_node.values().map(|t| t.len() as u64).collect();
    let faults = max_faults.map(|total| shares(total, &counts));
    if let (Some(total), Some(faults)) = (max_faults, &faults)
        && let Some((node, _)) = by_node.keys().zip(faults).find(|(_, n)| **n == 0)
    {
        return Err(UsageError(format!(
            "--max-faults {total} cannot be shared over {} nodes: node {node} would get none \
             (raise --max-faults or target fewer nodes)",
            counts.len()
        )));
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a validated budget (at least 0) in whole cents"
    )]
    let cents = budget.map(|b| shares((b * 100.0).floor() as u64, &counts));
    Ok(by_node
        .iter()
        .enumerate()
        .map(|(i, (node, targets))| NodeShare {
            node: node.clone(),
            targets: targets.clone(),
            #[allow(clippy::cast_precision_loss, reason = "cents of a budget")]
            budget: cents.as_ref().map(|c| c[i] as f64 / 100.0),
            max_faults: faults.as_ref().map(|f| f[i]),
        })
        .collect())
}

/// `total` shared in proportion to `weights` (not all 0), rounded down, the remainder handed
/// out one unit at a time to the largest rounded-off fractions (ties: the first).
fn shares(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum = u128::from(weights.iter().sum::<u64>().max(1));
    let exact = |w: u64| u128::from(total) * u128::from(w);
    let mut out: Vec<u64> = weights
        .iter()
        .map(|&w| u64::try_from(exact(w) / sum).unwrap_or(total))
        .collect();
    let mut rest = total - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(exact(weights[i]) % sum));
    for i in order {
        if rest == 0 {
            break;
        }
        out[i] += 1;
        rest -= 1;
    }
    out
}

/// Prints the resolution (JSON) and every node's answer.
fn report(
    shares: &[NodeShare],
    endpoints: &[Endpoint],
    answers: &[anyhow::Result<proto::StartExperimentResponse>],
    stopped: &[Option<String>],
    resolution: &pods::Resolution,
    dry_run: bool,
    json: bool,
) {
    let mut nodes = Vec::new();
    for (((share, endpoint), answer), stopped) in
        shares.iter().zip(endpoints).zip(answers).zip(stopped)
    {
        let pods: Vec<&str> = share.targets.iter().map(|c| c.pod.as_str()).collect();
        let money = share
            .budget
            .map_or_else(|| "the daemon's".to_owned(), |b| format!("{b:.2}"));
        let faults = share
            .max_faults
            .map_or_else(|| "from the budget".to_owned(), |n| n.to_string());
        if json {
            let mut entry = json!({
                "node": share.node, "daemon": endpoint.label, "addr": endpoint.addr,
                "pods": pods, "budget": share.budget, "max_faults": share.max_faults,
            });
            match answer {
                Ok(r) => {
                    let text = render::started(r, dry_run, true);
                    entry["ok"] = json!(true);
                    entry["id"] = json!(r.id);
                    entry["answer"] = serde_json::from_str(text.trim())
                        .unwrap_or(serde_json::Value::String(text));
                }
                Err(e) => {
                    entry["ok"] = json!(false);
                    entry["error"] = json!(exit::text(e));
                }
            }
            if let Some(s) = stopped {
                entry["rolled_back"] = json!(s);
            }
            nodes.push(entry);
        } else {
            println!(
                "== {}: {} target(s) ({}), budget {money}, max faults {faults}",
                endpoint.label,
                pods.len(),
                pods.join(", ")
            );
            match answer {
                Ok(r) => print!("{}", render::started(r, dry_run, false)),
                Err(e) => println!("error: {}", exit::text(e)),
            }
            if let Some(s) = stopped {
                println!("rolled back: {s}");
            }
        }
    }
    if json {
        println!(
            "{}",
            json!({"resolution": pods::json(resolution), "nodes": nodes})
        );
    }
}

#[cfg(test)]
mod tests {
    use super::shares;

    #[test]
    fn shares_are_proportional_rounded_down_and_add_up_to_the_total() {
        assert_eq!(shares(9, &[2, 1]), [6, 3]);
        // 10 over 1:1:1 is 3.33 each; the one left over goes to the first.
        assert_eq!(shares(10, &[1, 1, 1]), [4, 3, 3]);
        // 7 over 3:1 is 5.25 and 1.75: the larger fraction gets the remainder.
        assert_eq!(shares(7, &[3, 1]), [5, 2]);
        assert_eq!(shares(1, &[1, 1]), [1, 0]);
        assert_eq!(shares(0, &[4, 2]), [0, 0]);
        for (total, weights) in [(u64::MAX, &[16u64, 1, 7][..]), (1234, &[5, 5, 5, 1])] {
            assert_eq!(shares(total, weights).iter().sum::<u64>(), total);
        }
    }
}
