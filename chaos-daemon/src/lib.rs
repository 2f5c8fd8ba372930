//! chaos-daemon: the privileged node daemon of chaos-ebpf.
//!
//! * [`engine::Engine`] resolves a [`target`], turns a [`fault::FaultSpec`] into a slot
//!   configuration and kernel attachments ([`ebpf`]), and arms, disarms and stops it.
//! * [`experiment::Manager`] runs experiments on the engine: lifecycle, emergency-stop latch,
//!   recorded in the [`store`]; [`report`] renders their post-mortems.
//! * [`net`] changes network devices for latency faults (root qdisc, journaled);
//!   [`path_dirs`] resolves a syscall-error path prefix to the directories the kernel matches.
//! * [`host_fault`] makes the faults that are cgroup file writes; [`journal`] records host
//!   changes before they are made and undoes them, also after a crash; [`capability`] probes
//!   what this kernel can run.
//! * [`grpc`] is the `chaos.v1.ChaosDaemon` service in front of the manager; [`metrics`] its
//!   Prometheus metrics.

pub mod capability;
pub mod cgroupfs;
pub mod ebpf;
pub mod engine;
pub mod experiment;
pub mod fault;
pub mod grpc;
pub mod host_fault;
pub mod journal;
pub mod metrics;
pub mod net;
pub mod path_dirs;
pub mod report;
pub mod store;
pub mod target;
