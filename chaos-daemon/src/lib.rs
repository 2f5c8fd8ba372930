//! chaos-daemon: the privileged node daemon of chaos-ebpf.
//!
//! Today it is the fault engine: [`engine::Engine`] resolves a [`target`], turns a
//! [`fault::FaultSpec`] into a slot configuration and kernel attachments ([`ebpf`]), and arms,
//! disarms and stops it. The gRPC service, store and guards arrive with later issues.

pub mod ebpf;
pub mod engine;
pub mod fault;
pub mod target;
