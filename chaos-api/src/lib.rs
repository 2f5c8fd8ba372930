//! chaos-api: the contract between `chaos-ctl` and `chaos-daemon`.
//!
//! * [`proto`] — the gRPC service `chaos.v1.ChaosDaemon` (tonic/prost, generated at build time).
//! * [`config`] — the chaos config (`chaos/chaos.yaml`): budget, limits, guards, rollback, monitoring.
//! * [`experiment`] — experiment definition files (`chaos-ctl apply/validate -f`) and their proto.
//! * [`state`] — [`state::State`], where an experiment is in its life.
//! * [`error`] — [`error::ModelError`], the one error of the model, naming the offending path.
//!
//! No aya, no kube, no I/O beyond parsing.

pub mod config;
pub mod error;
pub mod experiment;
pub mod state;

pub mod proto {
    //! Generated from `proto/chaos/v1/daemon.proto`.
    #![allow(clippy::all, missing_docs, reason = "generated code")]
    tonic::include_proto!("chaos.v1");

    /// The binary metadata key of a dry run the daemon refuses: its
    /// [`StartExperimentResponse`] (every pre-flight check, and the plan when one was made),
    /// encoded, next to the status a start would have been refused with.
    pub const PREFLIGHT_METADATA: &str = "chaos-preflight-bin";

    /// What a refused dry run's `status` carries in [`PREFLIGHT_METADATA`], if anything.
    pub fn refused_dry_run(status: &tonic::Status) -> Option<StartExperimentResponse> {
        let bytes = status
            .metadata()
            .get_bin(PREFLIGHT_METADATA)?
            .to_bytes()
            .ok()?;
        prost::Message::decode(bytes).ok()
    }
}
