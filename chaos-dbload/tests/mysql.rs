//! chaos-dbload against a real MariaDB (Debian's), started on loopback for this binary.

mod common;

use common::servers;

#[test]
fn mysql_constant_rate_held_and_percentiles_reported() {
    common::constant_rate(servers::mysql());
}

#[test]
fn mysql_cap_sends_exactly_n_queries() {
    common::cap_is_exact(servers::mysql());
}

#[test]
fn mysql_bad_input_refused_before_load() {
    common::bad_input_refused(servers::mysql());
}

#[test]
fn mysql_sigterm_stops_and_drops_the_scratch_table() {
    common::sigterm_cleans_up(servers::mysql());
}

#[test]
fn mysql_sigkill_closes_connections_and_cleanup_drops_the_table() {
    common::sigkill_then_cleanup(servers::mysql());
}

#[test]
fn mysql_every_profile_runs_without_errors() {
    common::every_profile_runs(servers::mysql());
}

#[test]
fn mysql_stdin_changes_the_rate_and_stops() {
    common::stdin_changes_the_rate_and_stops(servers::mysql());
}

#[test]
fn mysql_latency_counts_from_the_intended_start() {
    common::latency_counts_from_the_intended_start(servers::mysql());
}
