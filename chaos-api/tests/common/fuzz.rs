//! The frame of the fuzz tests: rounds of proptest runners for a time budget
//! (`CHAOS_FUZZ_SECS` seconds, default 3; CI sets 60), every runner seeded from one seed so that
//! `PROPTEST_RNG_SEED` reproduces a whole run; and the checks every error and every accepted
//! experiment must pass.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chaos_api::{
    config::{ChaosConfig, Refusal},
    error::ModelError,
    experiment::Experiment,
};
use proptest::{
    prop_assert,
    strategy::Strategy,
    test_runner::{Config, TestCaseError, TestRunner},
};

/// The time budget: `CHAOS_FUZZ_SECS` seconds, 3 when unset.
fn fuzz_seconds() -> f64 {
    match std::env::var("CHAOS_FUZZ_SECS") {
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && secs >= 0.0 => secs,
            _ => panic!("CHAOS_FUZZ_SECS must be a number of seconds, got {text:?}"),
        },
        Err(_) => 3.0,
    }
}

/// One fuzz run: hands out runners and counts the cases they ran.
pub struct Fuzz {
    config: Config,
    seeds: TestRunner,
    cases: AtomicU64,
}

impl Fuzz {
    /// Calls `round` until the time budget is spent (at least once), each of its runners running
    /// `cases` cases; then prints, as `name`, how many cases ran in how many rounds.
    pub fn for_the_budget(name: &str, cases: u32, mut round: impl FnMut(&mut Fuzz)) {
        let budget = Duration::from_secs_f64(fuzz_seconds());
        // No failure persistence: a failure is printed, not written into the source tree.
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        // A runner runs its cases once; each gets a fresh runner seeded from this one.
        let mut fuzz = Fuzz {
            seeds: TestRunner::new(config.clone()),
            config,
            cases: AtomicU64::new(0),
        };
        let started = Instant::now();
        let mut rounds = 0u64;
        while rounds == 0 || started.elapsed() < budget {
            rounds += 1;
            round(&mut fuzz);
        }
        println!(
            "{name}: {} cases in {rounds} rounds, {:.1}s",
            fuzz.cases.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
    }

    /// Runs `test` over `strategy` with a fresh runner; panics naming `what` on a failure.
    pub fn run<S: Strategy>(
        &mut self,
        what: &str,
        strategy: &S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        let mut runner = TestRunner::new_with_rng(self.config.clone(), self.seeds.new_rng());
        let cases = &self.cases;
        let counted = |value| {
            cases.fetch_add(1, Ordering::Relaxed);
            test(value)
        };
        if let Err(failure) = runner.run(strategy, counted) {
            panic!("{what}: {failure}");
        }
    }
}

/// Checks that `error` names the path of what it rejects, and that its Display starts with it.
pub fn check_named(error: &ModelError) -> Result<(), TestCaseError> {
    let shown = error.to_string();
    let path = error.path();
    prop_assert!(
        path.is_some_and(|p| !p.is_empty()),
        "a rejection without a path: {shown}"
    );
    let path = path.unwrap_or_default();
    prop_assert!(shown.starts_with(&format!("{path}: ")), "{shown}");
    Ok(())
}

/// Checks what the daemon does next with an accepted experiment: the default config admits it
/// with a cap of at least one fault, or refuses it naming a limit's path, or the budget.
pub fn check_admission(experiment: &Experiment) -> Result<(), TestCaseError> {
    match ChaosConfig::default().admit(experiment) {
        Ok(admission) => prop_assert!(admission.max_faults >= 1),
        Err(Refusal::Limit(error)) => check_named(&error)?,
        Err(refusal) => {
            prop_assert!(refusal.to_string().starts_with("budget: "), "{refusal}")
        }
    }
    Ok(())
}
