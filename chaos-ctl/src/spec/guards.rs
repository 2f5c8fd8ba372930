//! The experiment's guard and ramp flags (`--guard`, `--slo`, `--guard-interval`, `--baseline`,
//! `--ramp`, `--ramp-hold`) as the message's `Guards` and `Ramp`; the model checks them.

use chaos_api::error::ModelError;
use chaos_api::proto;

use super::{SpecError, ceil_millis};
use crate::cli::GuardArgs;

/// The message's ramp from `--ramp` and `--ramp-hold`.
pub(super) fn ramp(g: &GuardArgs) -> Result<Option<proto::Ramp>, SpecError> {
    let (Some(text), Some(hold)) = (&g.ramp, g.ramp_hold) else {
        return Ok(None);
    };
    let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
    if text == "preset" {
        return Ok(Some(proto::Ramp {
            preset: true,
            steps: Vec::new(),
            hold_ms,
        }));
    }
    let steps = text
        .split(',')
        .map(|s| s.trim().parse::<f64>())
        .collect::<Result<Vec<f64>, _>>()
        .map_err(|_| {
            SpecError::Model(ModelError::Parse {
                path: "ramp.steps".to_owned(),
                message: format!(
                    "--ramp {text:?}: expected `preset` or numbers separated by commas: \
                     probabilities (0.01,0.05,0.1), network_latency delays in ms (20,50,100) \
                     or database_load rates in queries per second (50,200,500)"
                ),
            })
        })?;
    Ok(Some(proto::Ramp {
        preset: false,
        steps,
        hold_ms,
    }))
}

/// The message's guards from the flags; `None` when none is given.
pub(super) fn guards(g: &GuardArgs) -> Result<Option<proto::Guards>, SpecError> {
    let mut slos = std::collections::HashMap::new();
    for text in &g.slos {
        let mut parts = text.splitn(3, ':');
        let (Some(name), Some(objective), Some(query)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SpecError::Model(ModelError::Parse {
                path: "guards.slos".to_owned(),
                message: format!(
                    "--slo {text:?}: expected NAME:OBJECTIVE:QUERY, e.g. 'errors:<= 0.01:sum(rate(x[1m]))'"
                ),
            }));
        };
        let slo = proto::Slo {
            query: query.to_owned(),
            objective: objective.to_owned(),
            for_ms: 0,
            description: String::new(),
        };
        slos.insert(name.to_owned(), slo);
    }
    let any = !g.apply.is_empty()
        || !slos.is_empty()
        || g.guard_interval.is_some()
        || g.baseline.is_some();
    Ok(any.then(|| proto::Guards {
        restrict: !g.apply.is_empty(),
        apply: g.apply.clone(),
        slos,
        // Rounded up; the experiment is judged with the durations as given.
        interval_ms: g.guard_interval.map(ceil_millis),
        baseline_ms: g.baseline.map(ceil_millis),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chaos_api::config::Objective;
    use chaos_api::experiment::ExperimentGuards;

    use super::super::tests::{TARGET, build, error_path};

    /// The flags of a dependency failure with `guard_flags` added (and an intensity unless
    /// they ramp: the first step is the intensity).
    fn args<'a>(guard_flags: &[&'a str]) -> Vec<&'a str> {
        let intensity: &[&str] = if guard_flags.contains(&"--ramp") {
            &[]
        } else {
            &["--intensity", "0.5"]
        };
        [&["dependency_failure"], intensity, &TARGET[..], guard_flags].concat()
    }

    fn with(guard_flags: &[&str]) -> Result<chaos_api::experiment::Experiment, super::SpecError> {
        build(&args(guard_flags))
    }

    #[test]
    fn guard_flags_build_the_models_guards() {
        let e = with(&[
            "--guard",
            "error_rate",
            "--guard",
            "health_checks",
            "--slo",
            "checkout_errors:<= 0.02:sum(rate(x{code=~\"5..\"}[1m])) / sum(rate(x[1m]))",
            "--guard-interval",
            "100ms",
            "--baseline",
            "2s",
        ])
        .unwrap();
        let g = &e.guards;
        assert_eq!(
            g.apply.as_deref(),
            Some(&["error_rate".to_owned(), "health_checks".to_owned()][..])
        );
        let slo = &g.slos["checkout_errors"];
        assert_eq!(
            slo.query, "sum(rate(x{code=~\"5..\"}[1m])) / sum(rate(x[1m]))",
            "the query keeps its own colons"
        );
        assert_eq!(slo.objective, "<= 0.02".parse::<Objective>().unwrap());
        assert_eq!(slo.for_, Duration::ZERO);
        assert_eq!(g.interval, Some(Duration::from_millis(100)));
        assert_eq!(g.baseline, Some(Duration::from_secs(2)));
        assert!(g.applies("error_rate") && !g.applies("impact"));
        // Without guard flags: every guard of the daemon, at its interval, after its baseline.
        assert_eq!(with(&[]).unwrap().guards, ExperimentGuards::default());
        // A baseline of 0 is allowed (one evaluation).
        assert_eq!(
            with(&["--baseline", "0s"]).unwrap().guards.baseline,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn guard_flags_the_model_refuses_name_the_flag() {
        for (flags, path, message) in [
            (
                &["--guard-interval", "49ms"][..],
                "guards.interval",
                "guards.interval: 49ms is not allowed; expected 50ms to 1m (--guard-interval)",
            ),
            (
                &["--guard-interval", "50500us"][..],
                "guards.interval",
                "guards.interval: 50ms 500us is not allowed; expected whole milliseconds \
                 (--guard-interval)",
            ),
            (
                &["--baseline", "2h"][..],
                "guards.baseline",
                "guards.baseline: 2h is not allowed; expected 0s to 1h (--baseline)",
            ),
            (
                &["--slo", "errors <= 0.01"][..],
                "guards.slos",
                "guards.slos: --slo \"errors <= 0.01\": expected NAME:OBJECTIVE:QUERY, e.g. \
                 'errors:<= 0.01:sum(rate(x[1m]))' (--slo)",
            ),
            (
                &["--slo", "errors:== 1:up"][..],
                "guards.slos.errors.objective",
                "",
            ),
            (&["--guard", "no such"][..], "guards.apply[0]", ""),
        ] {
            assert_eq!(error_path(&args(flags)), path);
            let shown = with(flags).unwrap_err().to_string();
            assert!(shown.starts_with(&format!("{path}: ")), "{shown}");
            if !message.is_empty() {
                assert_eq!(shown, message);
            }
        }
    }

    #[test]
    fn ramp_flags_build_the_models_ramp() {
        let e = with(&["--ramp", "0.1,0.3,0.5", "--ramp-hold", "30s"]).unwrap();
        let ramp = e.ramp.unwrap();
        assert_eq!(ramp.values(), Some(&[0.1, 0.3, 0.5][..]));
        assert_eq!(ramp.hold, Duration::from_secs(30));
        let preset = with(&["--ramp", "preset", "--ramp-hold", "1m"]).unwrap();
        assert_eq!(
            preset.ramp.unwrap().values(),
            None,
            "the daemon's list, resolved there"
        );
        assert_eq!(
            error_path(&args(&["--ramp", "0.1,x", "--ramp-hold", "1m"])),
            "ramp.steps"
        );
    }
}
