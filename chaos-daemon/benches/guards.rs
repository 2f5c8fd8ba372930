//! Guard benchmarks on the real kernel (root), issue 8, with the daemon's lifecycle in process
//! (`Manager<Engine>` on a real cgroup, `Safety` on a tokio runtime, the reaper running):
//!
//! 1. Decision to disarm: a violating sample evaluated, then `Manager::rollback`, until the
//!    kernel is disarmed, over 1,000 violations; against `Manager::stop` measured the same way,
//!    interleaved in the same run.
//! 2. End to end: a dependency failure arms on a real HTTP workload under load; from the arm
//!    to the guard's disarm with a real Prometheus (Debian's) scraping every second and the
//!    guard evaluated every 100 ms, 20 runs, broken down into scrape wait, the wait for the
//!    guard's tick, the query, the evaluation and the disarm.
//! 3. Guard cost: CPU per evaluation of one experiment with the seed's four SLO guards, then 16
//!    such experiments evaluated every 50 ms by the daemon's own watchers for 10 s: the
//!    process's CPU against the same 16 experiments without guards, and the evaluations per
//!    second achieved against those expected.
//!
//! Run with `cargo xtask bench`; figures go to docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "guards/measure.rs"]
mod measure;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chaos_api::{
    config::{ChaosConfig, SloDefinition},
    experiment::Experiment,
    state::State,
};
use chaos_daemon::{
    engine::Engine,
    experiment::{Manager, SystemClock},
    guard::Sample,
    safety::Safety,
    store::Store,
};
use measure::{Cpu, cpu, ratio, report_ms, report_us, scrapes, shares, wait_clean, wall_ms};
use nix::time::ClockId;
use support::{
    http::{HttpWorkload, Load},
    prometheus::Prometheus,
    *,
};

const VIOLATIONS: usize = 1000;
const E2E_RUNS: usize = 20;
const SCRAPE: Duration = Duration::from_secs(1);
const GUARD_INTERVAL: Duration = Duration::from_millis(100);
/// Requests per second sent to the workload, from outside its cgroup.
const LOAD_RPS: u64 = 200;
const FLEET: usize = 16;
const FLEET_INTERVAL: Duration = Duration::from_millis(50);
const FLEET_WINDOW: Duration = Duration::from_secs(10);
const IDLE_WINDOW: Duration = Duration::from_secs(5);
/// Evaluations of one experiment back to back, for its CPU per evaluation.
const ONE_EVALUATIONS: usize = 500;
/// The SLO of benchmarks 1 and 2: the workload's 5xx ratio between its last two scrapes
/// (`irate`). The shipped `error_rate` (chaos/safety/http-slos.yaml) rates over 10 s, so after
/// a rollback it stays breached for 10 s; this one is healthy again two scrapes later, which
/// keeps a run to about 2 s. A full outage moves both past the objective at the first scrape
/// that saw more than 10 ms (this one) or 100 ms (the shipped one) of it.
const SLO: &str = "error_rate_1s";
const SLO_QUERY: &str = "(sum(irate(http_requests_total{code=~\"5..\"}[5s])) or 0 * \
     sum(irate(http_requests_total[5s]))) / clamp_min(sum(irate(http_requests_total[5s])), 1e-9)";
const OBJECTIVE: f64 = 0.01;

fn main() {
    let Some(mount) = kernel() else {
        eprintln!("benchmarks need root and cgroup2");
        std::process::exit(1);
    };
    let dir = TempDir::new("bench-guards");
    let config = chaos_config(&dir.0);
    let cg = TestCgroup::new(&mount, "bench-guards");
    let fleet = TestCgroup::new(&mount, "bench-guards-fleet");
    let manager = Manager::new(
        engine(&mount),
        Store::open(&dir.0).unwrap(),
        config.clone(),
        Arc::new(SystemClock),
    )
    .unwrap();
    manager.spawn_reaper(Duration::from_millis(50)).unwrap();
    let dependency = TcpServer::start("127.0.0.1:0");
    println!(
        "chaos-ebpf guard benchmarks ({} CPUs, kernel {}, load average {})\n",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        read_trimmed("/proc/sys/kernel/osrelease"),
        read_trimmed("/proc/loadavg")
    );

    let safety = Safety::new(Arc::new(config.clone())).unwrap();
    decision_to_disarm(&manager, &safety, &cg, &dependency);

    let workload = HttpWorkload::start(Some(&cg.path), dependency.addr, &[]);
    let _load = Load::start(&workload.url("/"), LOAD_RPS);
    let prometheus = Prometheus::start(&[workload.addr()], SCRAPE);
    let mut config = config;
    config.monitoring.prometheus.url = Some(prometheus.url());
    let config = Arc::new(config);
    let safety = Safety::new(config.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    end_to_end(&rt, &manager, &safety, &prometheus, &cg);
    guard_cost(&rt, &manager, &config, &prometheus, &fleet);
    drop(rt);
    assert_eq!(cg.attached(), 0);
}

/// The daemon's config: the repo's SLO file with the seed's critical and warning SLOs, guards
/// every 100 ms, no baseline window, no money limits.
fn chaos_config(dir: &Path) -> ChaosConfig {
    let slos = format!(
        "{}/../chaos/safety/http-slos.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let path = dir.join("chaos.yaml");
    let text = format!(
        "budget: {{max_experiment_cost: 1000000, max_daily_cost: 1000000000000, \
         cost_per_request: 0}}\nsafety_checks:\n  slo_files: ['{slos}']\n  slo_validation:\n    \
         critical_slos: [api_response_time_p95, api_availability, error_rate]\n    \
         warning_slos: [database_connection_time_p95]\n  guard_interval_ms: {}\n  baseline: 0s\n",
        GUARD_INTERVAL.as_millis()
    );
    std::fs::write(&path, text).unwrap();
    ChaosConfig::load(&path).unwrap()
}

/// Every connect from `cgroup` refused, guarded by [`SLO`] alone.
fn refusing(cgroup: &Path) -> Experiment {
    let mut e = spec(
        cgroup_target(cgroup),
        socket_error("ECONNREFUSED", &["connect"]),
        1.0,
    );
    let slo: SloDefinition = serde_norway::from_str(&format!(
        "query: '{SLO_QUERY}'\nobjective: '<= {OBJECTIVE}'"
    ))
    .unwrap();
    e.guards.apply = Some(vec![SLO.to_owned()]);
    e.guards.slos = BTreeMap::from([(SLO.to_owned(), slo)]);
    e.guards.interval = Some(GUARD_INTERVAL);
    e
}

/// How a condition of [`decision_to_disarm`] ends its experiment.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Evaluate, record the evaluation, roll back (the watcher's first order, kept to show
    /// what the recording costs on the disarm path). Times the rollback.
    RecordThenRollback,
    /// The watcher's order: evaluate, roll back, then record. Times the rollback.
    RollbackThenRecord,
    /// Times the recording of a red evaluation alone (`Manager::observe_guards`); then stops.
    RecordOnly,
    /// `Manager::stop`, timed from its call: the baseline.
    Stop,
}

fn decision_to_disarm(
    manager: &Arc<Manager<Engine>>,
    safety: &Safety,
    cg: &TestCgroup,
    dependency: &TcpServer,
) {
    use Ending::*;
    let exp = refusing(&cg.path);
    let conditions = [RecordThenRollback, RollbackThenRecord, RecordOnly, Stop];
    let mut took: [Vec<Duration>; 4] = Default::default();
    for i in 0..VIOLATIONS {
        for (&ending, took) in conditions.iter().zip(&mut took) {
            // Every condition starts with the recorder idle.
            manager.flush();
            let id = manager.start(manager.plan(&exp).unwrap()).unwrap();
            let check = i == 0 && ending == RecordThenRollback;
            if check {
                let t = dependency.connect_from(&cg.path, 20);
                assert_eq!((t.ok(), t.get("ECONNREFUSED")), (0, 20), "armed: {t:?}");
            }
            if ending == Stop {
                let arrived = Instant::now();
                let (_, d) = manager
                    .stop(&id, State::Stopped, "benchmark", arrived)
                    .unwrap();
                took.push(d);
                continue;
            }
            // A violating sample, evaluated as the watcher does.
            let mut set = safety.guards_for(&exp);
            set.slos[0].observe(Instant::now(), Sample::Value(0.5));
            let evaluated = Instant::now();
            let evaluation = set.evaluate(evaluated);
            let violation = evaluation.violation.as_ref().expect("0.5 violates <= 0.01");
            match ending {
                RecordThenRollback => {
                    manager.observe_guards(&id, &evaluation, evaluated);
                    let rolled = manager.rollback(&id, violation, evaluated).unwrap();
                    took.push(rolled.decision_to_disarm);
                }
                RollbackThenRecord => {
                    let rolled = manager.rollback(&id, violation, evaluated).unwrap();
                    took.push(rolled.decision_to_disarm);
                    manager.observe_guards(&id, &evaluation, evaluated);
                }
                RecordOnly => {
                    let t = Instant::now();
                    manager.observe_guards(&id, &evaluation, evaluated);
                    took.push(t.elapsed());
                    manager.flush();
                    manager
                        .stop(&id, State::Stopped, "benchmark", Instant::now())
                        .unwrap();
                }
                Stop => unreachable!("stopped above"),
            }
            if check {
                let t = dependency.connect_from(&cg.path, 20);
                assert_eq!(t.ok(), 20, "disarmed by the rollback: {t:?}");
            }
        }
    }
    manager.flush();
    println!(
        "decision to disarm: {VIOLATIONS} violations of a critical SLO per condition, each on a \
         fresh dependency_failure (1 slot, 2 links) on a real cgroup, conditions interleaved, \
         the recorder idle before each:"
    );
    let stop = &took[3];
    report_us(
        "evaluate, record, rollback (the first order)",
        &took[0],
        Some(stop),
    );
    report_us(
        "evaluate, rollback, then record (as the watcher)",
        &took[1],
        Some(stop),
    );
    report_us("record a red evaluation alone", &took[2], Some(stop));
    report_us("Manager::stop (baseline)", stop, None);
    println!();
}

/// The instants of one guarded run, from the arm to the disarm.
struct Timeline {
    armed: Instant,
    armed_ms: f64,
    query_sent: Instant,
    answered: Instant,
    verdict: Instant,
    disarmed: Instant,
    decision_to_disarm: Duration,
    reason: String,
}

/// Starts `exp` as the daemon does (guards, baseline, start) and runs the watcher's steps
/// (`Safety::sample`, `GuardSet::evaluate`, `Manager::observe_guards`, `Manager::rollback`) on
/// a tokio interval of [`GUARD_INTERVAL`], as `Safety::watch` does, timing each step.
async fn guarded_run(
    manager: &Arc<Manager<Engine>>,
    safety: &Safety,
    exp: &Experiment,
) -> Timeline {
    let mut set = safety.guards_for(exp);
    safety
        .baseline(&mut set, exp, Duration::ZERO, GUARD_INTERVAL)
        .await;
    let before = set.evaluate(Instant::now());
    assert!(before.violation.is_none(), "unhealthy before: {before:?}");
    let planned = manager.plan(exp).unwrap();
    let (armed, armed_ms) = (Instant::now(), wall_ms());
    let id = manager.start(planned).unwrap();
    let mut ticks = tokio::time::interval(GUARD_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        assert!(armed.elapsed() < Duration::from_secs(10), "no rollback");
        let query_sent = Instant::now();
        safety.sample(&mut set).await;
        let evaluated = Instant::now();
        let evaluation = set.evaluate(evaluated);
        let verdict = Instant::now();
        manager.observe_guards(&id, &evaluation, evaluated);
        let Some(violation) = evaluation.violation else {
            continue;
        };
        let rolled = manager.rollback(&id, &violation, evaluated).unwrap();
        return Timeline {
            armed,
            armed_ms,
            query_sent,
            answered: violation.observed,
            verdict,
            disarmed: evaluated + rolled.decision_to_disarm,
            decision_to_disarm: rolled.decision_to_disarm,
            reason: violation.reason,
        };
    }
}

fn end_to_end(
    rt: &tokio::runtime::Runtime,
    manager: &Arc<Manager<Engine>>,
    safety: &Safety,
    prometheus: &Prometheus,
    cg: &TestCgroup,
) {
    let exp = refusing(&cg.path);
    let mut phases: [Vec<f64>; 7] = Default::default();
    let mut within = 0;
    let mut clean_after = 0.0;
    let t0 = Instant::now();
    for _ in 0..E2E_RUNS {
        wait_clean(prometheus, clean_after, OBJECTIVE);
        // Arm at a random phase of the scrape cycle.
        std::thread::sleep(Duration::from_millis(u64::from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
                % 1000,
        )));
        let t = rt.block_on(guarded_run(manager, safety, &exp));
        assert!(
            t.reason.starts_with(&format!("slo violation: {SLO} = ")),
            "{}",
            t.reason
        );
        manager.flush();
        clean_after = wall_ms();
        let s = scrapes(prometheus);
        let seen = (1..s.len())
            .find(|&k| s[k].at_ms > t.armed_ms && ratio(&s, k) > OBJECTIVE)
            .map(|k| s[k].at_ms)
            .expect("a scrape saw the errors");
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let total = ms(t.disarmed - t.armed);
        let scrape_wait = seen - t.armed_ms;
        let query = ms(t.answered - t.query_sent);
        let evaluation = ms(t.verdict - t.answered);
        let disarm = ms(t.disarmed - t.verdict);
        let tick_wait = total - scrape_wait - query - evaluation - disarm;
        let decision = ms(t.decision_to_disarm);
        for (v, x) in phases.iter_mut().zip([
            total,
            scrape_wait,
            tick_wait,
            query,
            evaluation,
            disarm,
            decision,
        ]) {
            v.push(x);
        }
        within += usize::from(total <= ms(SCRAPE + GUARD_INTERVAL));
    }
    println!(
        "end to end: {E2E_RUNS} runs ({:.0} s) of a dependency failure armed at a random phase \
         of the scrape cycle on a workload serving {LOAD_RPS} requests/s; Prometheus scrapes \
         every {SCRAPE:?}, the guard ({SLO} <= {OBJECTIVE}) runs every {GUARD_INTERVAL:?}:",
        t0.elapsed().as_secs_f64()
    );
    for (label, v) in [
        "arm -> kernel disarmed (total)",
        "  scrape wait (arm -> the scrape that saw it)",
        "  ingestion + guard tick (-> query sent)",
        "  query (Prometheus round trip)",
        "  evaluation (answer -> verdict)",
        "  disarm (verdict -> kernel disarmed)",
        "decision to disarm (the daemon's figure)",
    ]
    .iter()
    .zip(&phases)
    {
        report_ms(label, v);
    }
    println!(
        "within one scrape + one guard interval ({:?}): {within}/{E2E_RUNS}\n",
        SCRAPE + GUARD_INTERVAL
    );
}

fn guard_cost(
    rt: &tokio::runtime::Runtime,
    manager: &Arc<Manager<Engine>>,
    config: &Arc<ChaosConfig>,
    prometheus: &Prometheus,
    parent: &TestCgroup,
) {
    let prom = Cpu::listening(prometheus.addr());
    let exps: Vec<Experiment> = (0..FLEET)
        .map(|i| {
            let target = cgroup_target(&parent.child(&format!("e{i}")));
            let mut e = spec(target, socket_error("ECONNREFUSED", &["connect"]), 1.0);
            e.guards.interval = Some(FLEET_INTERVAL);
            e
        })
        .collect();
    let guards = one_experiment(manager, config, &prom, &exps[0]);
    fleet(rt, manager, config, &prom, &exps, guards);
}

/// CPU per evaluation of one experiment's guards, evaluated back to back on a current-thread
/// runtime with a client of its own: every instruction of an evaluation (HTTP, JSON, the
/// evaluation, its recording) runs on this thread, but the recorder's SQLite writes. Returns
/// how many SLO guards it has.
fn one_experiment(
    manager: &Arc<Manager<Engine>>,
    config: &Arc<ChaosConfig>,
    prom: &Cpu,
    exp: &Experiment,
) -> usize {
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let safety = Safety::new(config.clone()).unwrap();
    let (thread, process) = (
        ClockId::CLOCK_THREAD_CPUTIME_ID,
        ClockId::CLOCK_PROCESS_CPUTIME_ID,
    );
    let (set, one, evaluate) = local.block_on(async {
        until_green(&safety, exp).await;
        let mut set = safety.guards_for(exp);
        safety
            .baseline(&mut set, exp, Duration::ZERO, FLEET_INTERVAL)
            .await;
        let id = manager.start(manager.plan(exp).unwrap()).unwrap();
        let before = [cpu(thread), cpu(process), prom.now()];
        for _ in 0..ONE_EVALUATIONS {
            safety.sample(&mut set).await;
            let now = Instant::now();
            let evaluation = set.evaluate(now);
            manager.observe_guards(&id, &evaluation, now);
            assert!(evaluation.violation.is_none(), "{evaluation:?}");
        }
        let after = [cpu(thread), cpu(process), prom.now()];
        let one: Vec<Duration> = (0..3)
            .map(|i| (after[i] - before[i]) / ONE_EVALUATIONS as u32)
            .collect();
        let t = cpu(thread);
        for _ in 0..10_000 {
            std::hint::black_box(set.evaluate(Instant::now()));
        }
        let evaluate = (cpu(thread) - t) / 10_000;
        manager
            .stop(&id, State::Stopped, "benchmark", Instant::now())
            .unwrap();
        (set, one, evaluate)
    });
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let guards = set.slos.len();
    println!(
        "guard cost, one experiment with {guards} SLO guards (+ rollback triggers and impact \
         score), {ONE_EVALUATIONS} evaluations back to back, CPU time:"
    );
    println!(
        "  {:<46} {:>8.1} µs",
        "GuardSet::evaluate alone",
        us(evaluate)
    );
    let label = format!("sample ({guards} queries), evaluate, record");
    println!(
        "  {label:<46} {:>8.1} µs on the evaluating thread, {:.1} µs in the whole process; \
         Prometheus {:.1} µs",
        us(one[0]),
        us(one[1]),
        us(one[2])
    );
    guards
}

/// 16 experiments: first without guards (the baseline), then with the daemon's watchers.
fn fleet(
    rt: &tokio::runtime::Runtime,
    manager: &Arc<Manager<Engine>>,
    config: &Arc<ChaosConfig>,
    prom: &Cpu,
    exps: &[Experiment],
    guards: usize,
) {
    let safety = Safety::new(config.clone()).unwrap();
    let mut started = Vec::new();
    rt.block_on(async {
        for e in exps {
            let mut set = safety.guards_for(e);
            safety
                .baseline(&mut set, e, Duration::ZERO, FLEET_INTERVAL)
                .await;
            let id = manager.start(manager.plan(e).unwrap()).unwrap();
            started.push((id, set, e.kind()));
        }
    });
    let me = Cpu::own();
    let idle = shares(&[&me, prom], IDLE_WINDOW);
    let evaluations = || {
        manager
            .metrics
            .guard_evaluations
            .with_label_values(&["error_rate"])
            .get()
    };
    let ids: Vec<String> = started.iter().map(|(id, ..)| id.clone()).collect();
    {
        let _enter = rt.enter();
        for (id, set, kind) in started {
            safety.watch(manager.clone(), id, set, FLEET_INTERVAL, kind, None);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = evaluations();
    let busy = shares(&[&me, prom], FLEET_WINDOW);
    let done = evaluations() - before;
    let ended: Vec<String> = ids
        .iter()
        .filter(|id| !manager.is_running(id))
        .map(|id| manager.get(id).map(|v| v.row.reason).unwrap_or_default())
        .collect();
    for id in &ids {
        // Refused only for one that ended by itself (listed above).
        let _ = manager.stop(id, State::Stopped, "benchmark", Instant::now());
    }
    std::thread::sleep(FLEET_INTERVAL * 4);
    let expected = FLEET as f64 / FLEET_INTERVAL.as_secs_f64();
    let per_s = done as f64 / FLEET_WINDOW.as_secs_f64();
    let per_evaluation =
        (busy[0] - idle[0]) * FLEET_WINDOW.as_secs_f64() * 1e6 / done.max(1) as f64;
    println!(
        "{FLEET} experiments x {guards} SLO guards every {FLEET_INTERVAL:?} for {FLEET_WINDOW:?} \
         (Safety::watch on a 2-thread runtime, as the daemon), against the same {FLEET} \
         experiments without guards for {IDLE_WINDOW:?}:"
    );
    println!(
        "  {:<46} {:>8.1} % with guards, {:.1} % without ({per_evaluation:.1} µs per \
         evaluation)",
        "daemon process CPU (100 % = one CPU)",
        busy[0] * 100.0,
        idle[0] * 100.0,
    );
    println!(
        "  {:<46} {:>8.1} % with guards, {:.1} % without",
        "Prometheus CPU",
        busy[1] * 100.0,
        idle[1] * 100.0
    );
    println!(
        "  {:<46} {per_s:>8.0}/s of {expected:.0}/s expected ({:.0} %); {} of {FLEET} \
         experiments ended meanwhile {ended:?}\n",
        "evaluations",
        per_s * 100.0 / expected,
        ended.len()
    );
}

/// Waits until `exp`'s guards are green (the shipped SLOs rate over 10 s: the end-to-end runs'
/// errors stay in view for that long).
async fn until_green(safety: &Safety, exp: &Experiment) {
    let t = Instant::now();
    loop {
        let mut set = safety.guards_for(exp);
        safety.sample(&mut set).await;
        let evaluation = set.evaluate(Instant::now());
        if evaluation.all_green() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{evaluation:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}
