//! chaos-ctl as the demo drives it: every command against the demo's daemon, its answers as
//! text or parsed JSON, starts that print the command and its answer, and waits on the
//! daemon's record of an experiment.

use std::{
    path::PathBuf,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// Runs chaos-ctl against the demo's daemon.
pub struct Ctl {
    pub bin: PathBuf,
    pub daemon: String,
}

impl Ctl {
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .arg("--daemon")
            .arg(&self.daemon)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "chaos-ctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `chaos-ctl --output json ARGS`, parsed.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.run(&[&["--output", "json"], args].concat())?;
        serde_json::from_str(out.trim()).with_context(|| format!("chaos-ctl {args:?}: {out}"))
    }

    /// Waits until the daemon lists no experiment (its recorder released and recorded them).
    pub fn wait_until_none_running(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        loop {
            let status = self.json(&["status"])?;
            if status["experiments"].as_array().is_some_and(Vec::is_empty) {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!("experiments still listed after {within:?}: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The post-mortem of `id` as JSON: `status`, `timeline`, `markdown`.
    pub fn report(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        self.json(&["report", id, "--format", "json"])
    }

    /// Waits until `id` is no longer running; its status then.
    pub fn wait_ended(&self, id: &str, within: Duration) -> anyhow::Result<serde_json::Value> {
        let until = Instant::now() + within;
        loop {
            let status = self.report(id)?["status"].clone();
            if status["state"] != "running" {
                return Ok(status);
            }
            if Instant::now() >= until {
                bail!("{id} still running after {within:?}: {status}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks the daemon's record of the demo's experiments, by name: the type (the user's
    /// name), the final state and, where given, the faults injected.
    pub fn check_record(&self, want: &[(&str, &str, &str, Option<u64>)]) -> anyhow::Result<()> {
        let list = self.json(&["report", "--last", "1h"])?;
        let list = list.as_array().context("report --last: not a list")?;
        for &(name, kind, state, injected) in want {
            let e = list
                .iter()
                .find(|e| e["name"] == name)
                .with_context(|| format!("{name} is not in the daemon's record"))?;
            let got = (
                e["experiment_type"].as_str(),
                e["state"].as_str(),
                e["counters"]["injected"].as_u64(),
            );
            if got.0 != Some(kind)
                || got.1 != Some(state)
                || injected.is_some_and(|n| got.2 != Some(n))
            {
                bail!(
                    "{name}: the daemon recorded {got:?}, expected {kind} {state} {injected:?}: {e}"
                );
            }
        }
        Ok(())
    }

    /// Starts an experiment, shows the command and its answer, returns the id.
    pub fn start(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args)?;
        println!("$ chaos-ctl {}\n{out}", args.join(" "));
        out.lines()
            .find_map(|l| l.strip_prefix("started "))
            .map(str::to_string)
            .context("no experiment id in chaos-ctl's answer")
    }
}
