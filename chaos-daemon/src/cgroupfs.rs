//! The cgroup v2 interface files the daemon reads and writes directly: resource knobs
//! (`cpu.max`, `memory.high`), `cgroup.kill`, `cgroup.events`, `cgroup.procs`. Values are
//! written as given, with one `write(2)`; nothing here runs a process.

use std::{
    fs, io,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// A knob's current content, without the trailing newline.
pub fn read_knob(path: &Path) -> io::Result<String> {
    Ok(fs::read_to_string(path)?.trim_end().to_string())
}

/// Writes a knob. cgroupfs takes the whole value in one write.
pub fn write_knob(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

/// Whether any process lives in the cgroup or its descendants (`cgroup.events`).
pub fn populated(cgroup: &Path) -> io::Result<bool> {
    let events = fs::read_to_string(cgroup.join("cgroup.events"))?;
    Ok(events
        .lines()
        .any(|l| l.split_whitespace().eq(["populated", "1"])))
}

/// Every process in the cgroup tree (from `cgroup.procs` of each descendant).
pub fn procs_tree(cgroup: &Path) -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    let mut stack: Vec<PathBuf> = vec![cgroup.to_path_buf()];
    while let Some(dir) = stack.pop() {
        match fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(procs) => pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok())),
            // A child removed while we walk: it has no processes any more.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(pids)
}

/// SIGKILLs every process in the cgroup tree at once (`cgroup.kill`, 5.14+) and waits up to
/// `wait` for the tree to be empty, as long as `keep_waiting` says so. Returns how many
/// processes it held.
pub fn kill_tree(
    cgroup: &Path,
    wait: Duration,
    keep_waiting: impl Fn() -> bool,
) -> io::Result<usize> {
    let victims = procs_tree(cgroup)?.len();
    fs::write(cgroup.join("cgroup.kill"), "1")?;
    let until = Instant::now() + wait;
    while keep_waiting() && populated(cgroup)? {
        if Instant::now() >= until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} still has processes {wait:?} after cgroup.kill",
                    cgroup.display()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok(victims)
}

/// The controllers available in a cgroup (`cgroup.controllers`).
pub fn controllers(cgroup: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(cgroup.join("cgroup.controllers"))?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Online CPUs, from `/sys/devices/system/cpu/online` ("0-3,6").
pub fn online_cpus() -> io::Result<u32> {
    parse_cpu_list(&fs::read_to_string("/sys/devices/system/cpu/online")?).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "unreadable /sys/devices/system/cpu/online",
        )
    })
}

fn parse_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse().ok()?)? + 1,
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(4));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
