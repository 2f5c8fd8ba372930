//! A daemon's `/metrics` as a test reads it: one scrape, one series' value, the series of a
//! family whose labels contain a given pair.

use super::http::get;

/// One scrape of `http://ADDR/metrics`: the exposition text.
pub fn scrape(addr: &str) -> String {
    let (status, body) =
        get(&format!("http://{addr}/metrics")).unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of `series` (its name and labels exactly as exposed, e.g.
/// `chaos_rollbacks_total{reason="slo"}`) in `body`.
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(k, _)| *k == series))
        .and_then(|(_, v)| v.parse().ok())
}

/// The series of `family` in `body` whose labels contain `labels` (e.g.
/// `experiment_id="exp-1"`), with their values.
pub fn matching<'a>(body: &'a str, family: &str, labels: &str) -> Vec<(&'a str, f64)> {
    body.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .and_then(|rest| rest.strip_prefix('{'))
                .is_some_and(|rest| rest.contains(labels))
        })
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}
