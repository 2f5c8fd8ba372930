//! chaos-ctl as a library: connecting to daemons ([`client`]) and rendering answers
//! ([`output`]). The `chaos-ctl` binary is the command line on top; benchmarks and tools reuse
//! the client.

pub mod client;
pub mod output;
