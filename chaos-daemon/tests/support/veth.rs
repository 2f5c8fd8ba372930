//! A veth pair in the test's network namespace, deleted on drop: a device of the test's own
//! for the faults that change a device's qdiscs (never the host's real interfaces).

use std::process::Command;

use super::run;

pub struct Veth(pub String);

impl Veth {
    /// `cl<tag><pid>` and its peer `cl<tag><pid>p`, both up.
    pub fn new(tag: &str) -> Self {
        let name = format!("cl{tag}{}", std::process::id() % 100_000);
        let peer = format!("{name}p");
        run(
            "ip",
            &["link", "add", &name, "type", "veth", "peer", "name", &peer],
        );
        run("ip", &["link", "set", &name, "up"]);
        run("ip", &["link", "set", &peer, "up"]);
        Self(name)
    }

    /// `tc qdisc show dev` of the root, as the `tc` tool reports it (independent of our code).
    pub fn root(&self) -> String {
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", &self.0, "root"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `tc qdisc replace dev <veth> root ARGS`.
    pub fn tc(&self, args: &[&str]) {
        let mut a = vec!["qdisc", "replace", "dev", &self.0, "root"];
        a.extend_from_slice(args);
        run("tc", &a);
    }

    pub fn ifindex(&self) -> u32 {
        chaos_daemon::net::devices::ifindex(&self.0).unwrap()
    }

    /// The index of `name` in the calling thread's network namespace.
    pub fn index_of(name: &str) -> Option<u32> {
        chaos_daemon::net::devices::ifindex(name).ok()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}
