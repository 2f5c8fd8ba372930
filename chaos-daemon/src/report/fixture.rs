// The synthetic experiment the report tests render: included (`include!`) by the unit tests of
// `report` and by tests/report_html.rs, each with its own imports of `ExperimentRow`,
// `EventRow`, `SnapshotRow`, `LoadSampleRow`, `State`, `Report`, `GuardSeries`, `GuardSample`,
// `Verdict` and `Violation`.
//
// An experiment that ran 6.5 s, stepped its intensity twice, crossed its budget alert and was
// rolled back by the `error_rate` guard. Names and reasons carry HTML and Markdown specials.
// [`Fixture::database_load`] is the same run as a database load whose ramp the server could not
// keep up with.

/// When the fixture's experiment started (Unix ms).
pub const STARTED_MS: u64 = 1_700_000_000_000;

/// The experiment's name: HTML specials, to check escaping.
pub const NAME: &str = "checkout <drill> & \"friends\"";

/// The health guard's name: HTML specials and a Markdown table separator.
pub const HEALTH: &str = "health https://x/healthz?a=1&b=<2>|";

/// The reason the experiment ended with.
pub const REASON: &str = "rolled back: guard error_rate 0.08 breached <= 0.01 <script>";

/// The parts of the fixture's report.
pub struct Fixture {
    pub row: ExperimentRow,
    pub events: Vec<EventRow>,
    pub snapshots: Vec<SnapshotRow>,
    pub guards: Vec<GuardSeries>,
    pub verdict: Verdict,
    pub load: Vec<LoadSampleRow>,
}

impl Fixture {
    pub fn new() -> Self {
        let (row, events, snapshots) = stored();
        Fixture {
            row,
            events,
            snapshots,
            guards: guards(),
            verdict: verdict(),
            load: Vec::new(),
        }
    }

    /// The experiment as a database load: 200 qps, then 500 from +3 s, which the server could
    /// not keep up with (latency climbing, timeouts, a second where nothing finished).
    pub fn database_load() -> Self {
        let mut f = Self::new();
        f.row.kind = "database_load".into();
        f.load = load();
        f
    }

    /// The whole report.
    pub fn report(&self) -> Report<'_> {
        Report {
            row: &self.row,
            events: &self.events,
            snapshots: &self.snapshots,
            guards: &self.guards,
            verdict: &self.verdict,
            load: &self.load,
        }
    }

    /// The report as if the experiment ran without guards.
    pub fn without_guards(&self) -> Report<'_> {
        static NONE: Verdict = Verdict {
            baseline: Vec::new(),
            violation: None,
            impact_score: None,
            daily_budget: None,
        };
        Report {
            guards: &[],
            verdict: &NONE,
            ..self.report()
        }
    }
}

/// What the store keeps of the experiment.
fn stored() -> (ExperimentRow, Vec<EventRow>, Vec<SnapshotRow>) {
    let at = |s: f64| STARTED_MS + (s * 1000.0) as u64;
    let event = |s: f64, kind: &str, message: &str| EventRow {
        at_ms: at(s),
        kind: kind.into(),
        message: message.into(),
    };
    let snapshot = |s: f64, injected: u64| SnapshotRow {
        at_ms: at(s),
        seen: injected * 40,
        matched: injected * 3,
        injected,
        capped: 0,
    };
    (
        ExperimentRow {
            id: "exp-42".into(),
            name: NAME.into(),
            kind: "dependency_failure".into(),
            target: "/sys/fs/cgroup/unified/checkout".into(),
            spec: Vec::new(),
            state: State::Stopped,
            reason: REASON.into(),
            started_ms: STARTED_MS,
            ended_ms: at(6.5),
            seen: 5200,
            matched: 390,
            injected: 130,
            capped: 0,
            budget: 2.0,
            spent: 1.3,
        },
        vec![
            event(0.0, "baseline", "baseline over 0 s: error_rate 0.002"),
            event(0.01, "armed", "slot 0"),
            event(1.0, "step", "intensity 0.05"),
            event(3.0, "step", "intensity 0.10"),
            event(4.0, "budget_alert", "experiment budget 80% spent"),
            event(6.1, "rollback", "guard error_rate: 0.08 breached <= 0.01"),
            event(6.5, "stopped", REASON),
        ],
        vec![
            snapshot(1.0, 10),
            snapshot(2.0, 30),
            snapshot(3.0, 30),
            snapshot(4.0, 80),
            snapshot(6.0, 130),
        ],
    )
}

fn guards() -> Vec<GuardSeries> {
    let samples = |points: &[(f64, Option<f64>, bool)]| {
        points
            .iter()
            .map(|&(s, value, ok)| GuardSample {
                at_ms: STARTED_MS + (s * 1000.0) as u64,
                value,
                ok,
            })
            .collect()
    };
    vec![
        GuardSeries {
            name: "error_rate".into(),
            kind: "critical_slo".into(),
            objective: "<= 0.01".into(),
            threshold: 0.01,
            samples: samples(&[
                (0.5, Some(0.002), true),
                (1.5, Some(0.004), true),
                (2.5, None, false),
                (3.5, Some(0.006), true),
                (4.5, Some(0.03), false),
                (5.5, Some(0.05), false),
                (6.0, Some(0.08), false),
            ]),
        },
        GuardSeries {
            name: HEALTH.into(),
            kind: "health".into(),
            objective: ">= 0.95".into(),
            threshold: 0.95,
            samples: samples(&[
                (0.5, Some(1.0), true),
                (2.0, Some(1.0), true),
                (4.0, Some(0.97), true),
                (6.0, Some(1.0), true),
            ]),
        },
        GuardSeries {
            name: "impact".into(),
            kind: "impact".into(),
            objective: "<= 0.5".into(),
            threshold: 0.5,
            samples: samples(&[
                (0.5, Some(0.0), true),
                (2.0, Some(0.1), true),
                (4.0, Some(0.3), true),
                (6.0, Some(0.62), false),
            ]),
        },
    ]
}

fn load() -> Vec<LoadSampleRow> {
    // At second `s`: the rate, queries per second, p50/p95/p99 in µs, sent and failed.
    let sample = |s: u64, rate, qps, us: Option<[u64; 3]>, sent, failed| LoadSampleRow {
        at_ms: STARTED_MS + s * 1000,
        rate,
        qps,
        p50_us: us.map(|u| u[0]),
        p95_us: us.map(|u| u[1]),
        p99_us: us.map(|u| u[2]),
        sent,
        failed,
    };
    vec![
        sample(1, 200.0, 198.0, Some([1_200, 3_400, 8_000]), 198, 0),
        sample(2, 200.0, 201.0, Some([1_300, 3_600, 9_000]), 399, 0),
        sample(3, 500.0, 488.0, Some([5_000, 40_000, 90_000]), 887, 2),
        sample(4, 500.0, 300.0, Some([30_000, 180_000, 350_000]), 1_169, 15),
        sample(5, 500.0, 120.0, None, 1_289, 23),
        sample(6, 500.0, 11.0, Some([60_000, 120_000, 200_000]), 1_300, 23),
    ]
}

fn verdict() -> Verdict {
    Verdict {
        baseline: vec![
            ("error_rate".into(), 0.002),
            (HEALTH.into(), 1.0),
            ("impact".into(), 0.0),
        ],
        violation: Some(Violation {
            guard: "error_rate".into(),
            value: Some(0.08),
            objective: "<= 0.01".into(),
            observed_ms: STARTED_MS + 6000,
            observation_to_disarm_us: Some(100_412),
            decision_to_disarm_us: 412,
        }),
        impact_score: Some(0.62),
        daily_budget: Some((3.5, 10.0)),
    }
}
