//! chaos-dbload against a real Redis (Debian's), started on loopback for this binary.

mod common;

use common::servers;

#[test]
fn redis_constant_rate_held_and_percentiles_reported() {
    common::constant_rate(servers::redis());
}

#[test]
fn redis_cap_sends_exactly_n_queries() {
    common::cap_is_exact(servers::redis());
}

#[test]
fn redis_bad_input_refused_before_load() {
    common::bad_input_refused(servers::redis());
}

#[test]
fn redis_sigterm_stops_and_drops_the_scratch_keys() {
    common::sigterm_cleans_up(servers::redis());
}

#[test]
fn redis_sigkill_closes_connections_and_cleanup_drops_the_keys() {
    common::sigkill_then_cleanup(servers::redis());
}

#[test]
fn redis_every_profile_runs_without_errors() {
    common::every_profile_runs(servers::redis());
}

#[test]
fn redis_stdin_changes_the_rate_and_stops() {
    common::stdin_changes_the_rate_and_stops(servers::redis());
}

#[test]
fn redis_latency_counts_from_the_intended_start() {
    common::latency_counts_from_the_intended_start(servers::redis());
}
