//! Experiment files and chaos configs read offline (`apply -f`, `validate -f`, `validate
//! --config`): each with the model's own parser, a chaos config given as an experiment (and the
//! reverse) recognized and pointed to the right flag, and, with both files, the config's
//! [`ChaosConfig::admit`].

use std::path::Path;

use chaos_api::config::ChaosConfig;
use chaos_api::error::ModelError;
use chaos_api::experiment::Experiment;
use chaos_ctl::render;

use crate::exit::{Refused, UsageError, usage};

/// The top-level sections of a chaos config.
const CONFIG_SECTIONS: [&str; 6] = [
    "budget",
    "experiments",
    "safety_checks",
    "rollback",
    "experiment_types",
    "monitoring",
];

/// The top-level keys of an experiment file that a chaos config does not have.
const EXPERIMENT_KEYS: [&str; 9] = [
    "name",
    "type",
    "target",
    "duration",
    "intensity",
    "max_faults",
    "dry_run",
    "fault",
    "filter",
];

/// The top-level key of an error path (`budget.alert_threshold` -> `budget`).
fn top_key(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

fn read(path: &Path) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|e| UsageError(format!("{}: {e}", path.display())))
}

/// Reads and validates an experiment file; a chaos config gets a hint to use `--config`.
pub fn read_experiment(path: &Path) -> anyhow::Result<Experiment> {
    let text = read(path)?;
    Experiment::from_yaml(&text).map_err(|e| {
        if is_chaos_config(&text, &e) {
            usage(format!(
                "{0} is a chaos config, not an experiment definition: check it with \
                 `chaos-ctl validate --config {0}`",
                path.display()
            ))
        } else {
            usage(format!("{}: {e}", path.display()))
        }
    })
}

/// Reads and validates a chaos config with its SLO files; an experiment file gets a hint to
/// use `-f`.
fn read_config(path: &Path) -> anyhow::Result<ChaosConfig> {
    let text = read(path)?;
    ChaosConfig::load(path).map_err(|e| {
        let chaos_api::config::LoadError::Model { path: at, error: e } = e else {
            return usage(e.to_string());
        };
        if at != path {
            usage(format!("{}: {e}", at.display()))
        } else if is_experiment(&text, &e) {
            usage(format!(
                "{0} is an experiment definition, not a chaos config: check it with \
                 `chaos-ctl validate -f {0}`",
                path.display()
            ))
        } else {
            usage(format!("{}: {e}", path.display()))
        }
    })
}

/// Whether `text`, refused as an experiment with `error`, is a chaos config: the refusal is at
/// a config section (the experiment parser stops at the first key it does not know), and
/// `budget`, which both have, is a config's mapping.
fn is_chaos_config(text: &str, error: &ModelError) -> bool {
    let Some(at) = error.path().map(top_key) else {
        return false;
    };
    if !CONFIG_SECTIONS.contains(&at) {
        return false;
    }
    at != "budget"
        || match ChaosConfig::from_yaml(text) {
            Ok(_) => true,
            // A config with a mistake inside a section.
            Err(e) => e
                .path()
                .is_some_and(|p| CONFIG_SECTIONS.contains(&top_key(p)) && p != top_key(p)),
        }
}

/// Whether `text`, refused as a chaos config with `error`, is an experiment definition.
fn is_experiment(text: &str, error: &ModelError) -> bool {
    error
        .path()
        .is_some_and(|p| EXPERIMENT_KEYS.contains(&top_key(p)))
        || Experiment::from_yaml(text).is_ok()
}

/// `chaos-ctl validate`: checks the files offline and prints what it found; with both, also
/// whether the config admits the experiment (a refusal is a usage error).
pub fn validate(file: Option<&Path>, config: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let experiment = file.map(read_experiment).transpose()?;
    let chaos_config = config.map(read_config).transpose()?;
    if let (Some(path), Some(e)) = (file, &experiment) {
        print!(
            "{}",
            render::valid_experiment(&path.display().to_string(), e, json)
        );
    }
    if let Some(path) = config {
        print!(
            "{}",
            render::valid_config(&path.display().to_string(), json)
        );
    }
    if let (Some(e), Some(c), Some(file), Some(config)) = (&experiment, &chaos_config, file, config)
    {
        let admission = c.admit(e).map_err(|refusal| {
            Refused(format!(
                "{} refuses {}: {refusal}",
                config.display(),
                file.display()
            ))
        })?;
        print!(
            "{}",
            render::admission(&config.display().to_string(), &admission, json)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_configs_and_experiments_are_told_apart() {
        let as_experiment = |text: &str| {
            let e = Experiment::from_yaml(text).unwrap_err();
            is_chaos_config(text, &e)
        };
        assert!(as_experiment("budget:\n  max_daily_cost: 10\n"));
        assert!(as_experiment(
            "experiments:\n  packet_loss: {enabled: false}\n"
        ));
        assert!(as_experiment("budget:\n  alert_threshold: 7\n"));
        assert!(as_experiment("monitoring: {}\nname: x\n"));
        assert!(!as_experiment(""));
        assert!(!as_experiment("name: x\ntype: packet_loss\n"));
        assert!(!as_experiment("budget: lots\nname: x\n"));
        let as_config = |text: &str| {
            let e = ChaosConfig::from_yaml(text).unwrap_err();
            is_experiment(text, &e)
        };
        assert!(as_config("name: x\ntype: packet_loss\n"));
        assert!(as_config(
            "budget: 2\nname: x\ntype: pod_deletion\ntarget: {pid: 1}\nduration: 1m\n"
        ));
        assert!(!as_config("budget:\n  alert_threshold: 7\n"));
        assert!(!as_config("frobnicate: 1\n"));
    }
}
