//! The guard tests' harness proven end to end, without root: the HTTP workload (`chaos-workload
//! http-serve`) with its TCP dependency and open-loop load, scraped every 200 ms by a real
//! Prometheus (Debian's), and the SLO definitions shipped in `chaos/safety/http-slos.yaml`
//! evaluated through its API: healthy values meet every objective, a dialled error ratio
//! breaches (or not) the error-rate SLO, and a dependency that dies breaks `/healthz` and
//! availability.

mod support;

use std::{collections::BTreeMap, time::Duration, time::Instant};

use support::{
    http::{Dependency, HttpWorkload, Load, get, http_load},
    prometheus::Prometheus,
};

const SCRAPE: Duration = Duration::from_millis(200);
/// Requests per second of the background load.
const RPS: u64 = 50;
/// The seed's SLO names (chaos/chaos.yaml: critical_slos and warning_slos).
const SEED_SLOS: [&str; 4] = [
    "api_availability",
    "api_response_time_p95",
    "database_connection_time_p95",
    "error_rate",
];

/// One definition of http-slos.yaml, as the daemon's config reads it.
struct Slo {
    query: String,
    op: String,
    threshold: f64,
}

impl Slo {
    fn holds(&self, v: f64) -> bool {
        match self.op.as_str() {
            ">=" => v >= self.threshold,
            ">" => v > self.threshold,
            "<=" => v <= self.threshold,
            "<" => v < self.threshold,
            op => panic!("objective operator {op:?}"),
        }
    }
}

/// The shipped definitions, checked for shape: the seed's four names, each with a query, an
/// objective `<op> <number>`, a `for` and a description, and nothing else.
fn slos() -> BTreeMap<String, Slo> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../chaos/safety/http-slos.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let raw: BTreeMap<String, BTreeMap<String, String>> =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        raw.keys().map(String::as_str).collect::<Vec<_>>(),
        SEED_SLOS
    );
    raw.into_iter()
        .map(|(name, fields)| {
            let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
            assert_eq!(keys, ["description", "for", "objective", "query"], "{name}");
            let (op, number) = fields["objective"]
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}: objective {:?}", fields["objective"]));
            humantime::parse_duration(&fields["for"]).expect("for is a duration");
            let slo = Slo {
                query: fields["query"].clone(),
                op: op.to_owned(),
                threshold: number.parse().expect("objective threshold"),
            };
            (name, slo)
        })
        .collect()
}

/// A workload under load with its own Prometheus.
struct Scraped {
    prometheus: Prometheus,
    _load: Load,
    workload: HttpWorkload,
}

fn scraped(dependency: &Dependency, extra_args: &[&str]) -> Scraped {
    let workload = HttpWorkload::start(None, dependency.addr(), extra_args);
    let load = Load::start(&workload.url("/"), RPS);
    let prometheus = Prometheus::start(&[workload.addr()], SCRAPE);
    eprintln!(
        "prometheus started and first scraped in {:?}",
        prometheus.started_in
    );
    Scraped {
        prometheus,
        _load: load,
        workload,
    }
}

#[test]
fn healthy_workload_meets_every_slo_until_its_dependency_dies() {
    let slos = slos();
    let dependency = Dependency::start();
    let mut s = scraped(&dependency, &[]);
    let p = &s.prometheus;
    // Every query gives a number meeting its objective once the window holds two scrapes.
    for (name, slo) in &slos {
        let v = p.wait_for(&slo.query, |v| slo.holds(v), Duration::from_secs(5));
        eprintln!("{name} = {v}");
    }
    assert_eq!(p.query(&slos["api_availability"].query), Some(1.0));
    assert_eq!(p.query(&slos["error_rate"].query), Some(0.0));
    let p95 = p.query(&slos["api_response_time_p95"].query).unwrap();
    assert!(p95 > 0.0 && p95 <= 0.5, "p95 {p95}");
    // The load's requests are counted per handler and code, the scrapes are not.
    assert!(p.query(r#"sum(http_requests_total{handler="/",code="200"})"#) > Some(0.0));
    assert_eq!(
        p.query(r#"count(http_requests_total{handler="/metrics"})"#),
        None
    );
    assert!(dependency.accepted() > 0);

    let (code, body) = get(&s.workload.url("/healthz")).unwrap();
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let killed = Instant::now();
    drop(dependency);
    let (code, body) = get(&s.workload.url("/healthz")).unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("ECONNREFUSED"), "{body}");
    for name in ["api_availability", "error_rate"] {
        let slo = &slos[name];
        let v = p.wait_for(&slo.query, |v| !slo.holds(v), Duration::from_secs(3));
        eprintln!(
            "{name} = {v} breached {:?} after the dependency died",
            killed.elapsed()
        );
    }

    s.prometheus.kill();
    let err = s.prometheus.try_query("up").unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
}

#[test]
fn an_error_ratio_of_a_fifth_breaches_the_error_rate_slo() {
    let slos = slos();
    let dependency = Dependency::start();
    let s = scraped(&dependency, &["--error-ratio", "0.2"]);
    let p = &s.prometheus;
    let error_rate = &slos["error_rate"];
    let v = p.wait_for(&error_rate.query, |v| v > 0.01, Duration::from_secs(5));
    assert!(!error_rate.holds(v));
    // Both rates cover the same scrapes, so the ratio is the dialled one (within the few
    // requests in flight at a scrape).
    let v = p.wait_for(
        &error_rate.query,
        |v| (0.17..=0.23).contains(&v),
        Duration::from_secs(5),
    );
    let availability = p.query(&slos["api_availability"].query).unwrap();
    assert!(
        (availability - (1.0 - v)).abs() < 0.02,
        "{availability} vs {v}"
    );
    assert!(!slos["api_availability"].holds(availability));
    // The dependency is fine: the connection SLO is not what breaks.
    let db = &slos["database_connection_time_p95"];
    assert!(db.holds(p.query(&db.query).unwrap()));
}

#[test]
fn an_error_ratio_below_the_objective_keeps_the_error_rate_slo() {
    let slos = slos();
    let dependency = Dependency::start();
    let s = scraped(&dependency, &["--error-ratio", "0.005"]);
    let p = &s.prometheus;
    let error_rate = &slos["error_rate"];
    // The 500s show in the ratio (one in 200 requests, one every 4 s at 50 rps, so the 10 s
    // window always holds some), yet every evaluation over a few seconds meets the objective.
    let v = p.wait_for(&error_rate.query, |v| v > 0.0, Duration::from_secs(10));
    assert!(error_rate.holds(v), "error_rate {v}");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let v = p.query(&error_rate.query).expect("error_rate has a value");
        assert!(error_rate.holds(v), "error_rate {v}");
        std::thread::sleep(SCRAPE);
    }
}

#[test]
fn http_load_counts_every_answer_by_status() {
    let dependency = Dependency::start();
    let workload = HttpWorkload::start(None, dependency.addr(), &["--error-ratio", "0.25"]);
    let t = http_load(&workload.url("/"), 40, Duration::from_secs(1));
    assert_eq!((t.ok(), t.get("status_500")), (30, 10), "{t:?}");
    let (code, metrics) = get(&workload.url("/metrics")).unwrap();
    assert_eq!(code, 200);
    for line in [
        r#"http_requests_total{code="200",handler="/"} 30"#,
        r#"http_requests_total{code="500",handler="/"} 10"#,
        r#"http_requests_total{code="503",handler="/healthz"} 0"#,
        r#"http_request_duration_seconds_count{handler="/"} 40"#,
        r#"http_request_duration_seconds_bucket{handler="/",le="+Inf"} 40"#,
        "db_client_connection_create_time_seconds_count 40",
        "# TYPE http_request_duration_seconds histogram",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    drop(dependency);
    let t = http_load(&workload.url("/healthz"), 20, Duration::from_secs(1));
    assert_eq!((t.ok(), t.get("status_503")), (0, 20), "{t:?}");
    assert_eq!(get(&workload.url("/nope")).unwrap().0, 404);
}
