//! Network devices the daemon changes for the tc faults (latency, silent egress loss, HTTP
//! errors), over rtnetlink (no `tc` process):
//!
//! * [`netlink`] — a minimal `NETLINK_ROUTE` client with extended-ack error messages.
//! * [`qdisc`] — read / replace / delete / restore a device's root qdisc, `fq` sizing, `clsact`,
//!   and [`qdisc::probe_fq`], the kernel capability probe.
//! * [`devices`] — the shared, journaled `fq` roots: one per device however many latency faults
//!   use it, the previous root journaled before the change and put back by the last user or by
//!   [`devices::restore_journal`] at daemon start.
//! * [`netns`] — network namespaces: a target's, running netlink and tc operations inside it,
//!   devices named across namespaces in the journal.
//! * [`latency`] — a latency fault's kernel side: namespace, device, `fq`, tc egress program.
//! * [`egress`] — the silent egress drop's and HTTP errors' kernel side: namespace, its
//!   devices, tc egress program.

pub mod devices;
pub mod egress;
pub mod latency;
pub mod netlink;
pub mod netns;
pub mod qdisc;

pub use self::qdisc::probe_fq;
