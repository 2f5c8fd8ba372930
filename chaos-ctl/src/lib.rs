//! chaos-ctl as a library: connecting to daemons ([`client`]) and rendering answers
//! ([`render`]). The `chaos-ctl` binary is the command line on top (`cli`, `spec`, `commands`,
//! `fanout`, `exit`); benchmarks and tools reuse the client.

pub mod client;
pub mod render;
