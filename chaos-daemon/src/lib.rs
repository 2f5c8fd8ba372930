//! chaos-daemon: the privileged node daemon of chaos-ebpf.
//!
//! * [`experiment::Manager`] runs experiments: admits them under the config (chaos-api's
//!   model), plans them on the [`engine`], arms exactly that plan, ends them, records them in
//!   the [`store`]; [`report`] renders their post-mortems.
//! * [`engine::Engine`] resolves a [`target`], turns an experiment into a slot configuration
//!   and kernel attachments ([`fault`], [`ebpf`]) or a host fault ([`host`]), and arms and
//!   releases it. [`switch`] is the kill path: the emergency-stop latch and every disarm, which
//!   waits for nothing else.
//! * [`net`] changes network devices for latency faults (root qdisc, journaled);
//!   [`path_dirs`] resolves a syscall-error path prefix to the directories the kernel matches.
//! * [`journal`] records host changes before they are made and undoes them, also after a
//!   crash; [`capability`] probes what this kernel can run.
//! * [`grpc`] is the `chaos.v1.ChaosDaemon` service in front of the manager; [`metrics`] its
//!   Prometheus metrics; [`error`] the classes errors are answered by.

pub mod capability;
pub mod cgroupfs;
pub mod ebpf;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod fault;
pub mod grpc;
pub mod guard;
pub mod host;
pub mod journal;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod path_dirs;
pub mod probe;
pub mod report;
pub mod safety;
pub mod store;
pub mod switch;
pub mod sync;
pub mod target;
