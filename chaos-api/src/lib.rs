//! chaos-api: the contract between `chaos-ctl` and `chaos-daemon`.
//!
//! * [`proto`] — the gRPC service `chaos.v1.ChaosDaemon` (tonic/prost, generated at build time).
//!
//! No aya, no kube, no I/O beyond parsing.

pub mod proto {
    //! Generated from `proto/chaos/v1/daemon.proto`.
    #![allow(clippy::all, missing_docs, reason = "generated code")]
    tonic::include_proto!("chaos.v1");
}
