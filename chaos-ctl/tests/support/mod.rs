//! Helpers shared by chaos-ctl's test files.

use std::path::PathBuf;

/// A path for a temporary directory, unique to the test process and `name`, not yet created
/// (`chaos-ctl certs --out` creates it); removed on drop, also when the test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chaos-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
