//! chaos-dbload against a real PostgreSQL 15 (Debian's), started on loopback for this binary.

mod common;

use common::servers;

#[test]
fn postgres_constant_rate_held_and_percentiles_reported() {
    common::constant_rate(servers::postgres());
}

#[test]
fn postgres_cap_sends_exactly_n_queries() {
    common::cap_is_exact(servers::postgres());
}

#[test]
fn postgres_bad_input_refused_before_load() {
    common::bad_input_refused(servers::postgres());
}

#[test]
fn postgres_sigterm_stops_and_drops_the_scratch_table() {
    common::sigterm_cleans_up(servers::postgres());
}

#[test]
fn postgres_sigkill_closes_connections_and_cleanup_drops_the_table() {
    common::sigkill_then_cleanup(servers::postgres());
}

#[test]
fn postgres_every_profile_runs_without_errors() {
    common::every_profile_runs(servers::postgres());
}

#[test]
fn postgres_stdin_changes_the_rate_and_stops() {
    common::stdin_changes_the_rate_and_stops(servers::postgres());
}

#[test]
fn postgres_latency_counts_from_the_intended_start() {
    common::latency_counts_from_the_intended_start(servers::postgres());
}
