//! A newc (`070701`) cpio archive, the format the kernel unpacks as an initramfs: a tree of
//! directories, files, symlinks and device nodes, written gzip-compressed through `gzip`.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

enum Node {
    Dir,
    /// A host file's contents with this mode (permission bits).
    File(PathBuf, u32),
    Bytes(Vec<u8>, u32),
    Symlink(String),
    CharDev(u32, u32),
}

/// The archive's entries by path (no leading `/`); parents sort before their children.
#[derive(Default)]
pub struct Archive {
    nodes: BTreeMap<String, Node>,
}

impl Archive {
    fn insert(&mut self, path: &str, node: Node) {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.nodes
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Node::Dir);
            parent = p.parent();
        }
        self.nodes.insert(path.to_string(), node);
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, Node::Dir);
    }

    /// The host file `src` at `path`; its contents are read when the archive is written.
    pub fn file(&mut self, path: &str, src: &Path, mode: u32) {
        self.insert(path, Node::File(src.to_path_buf(), mode));
    }

    pub fn bytes(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(path, Node::Bytes(data.into(), mode));
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Node::Symlink(target.to_string()));
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32) {
        self.insert(path, Node::CharDev(major, minor));
    }

    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path.trim_start_matches('/'))
    }

    /// Writes the archive to `out` compressed by `gzip`.
    pub fn write_gz(&self, out: &Path) -> anyhow::Result<()> {
        let file =
            std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
        let mut gzip = Command::new("gzip")
            .args(["-6", "-c"])
            .stdin(Stdio::piped())
            .stdout(file)
            .spawn()
            .context("spawn gzip")?;
        let mut w = std::io::BufWriter::new(gzip.stdin.take().context("gzip stdin")?);
        for (ino, (path, node)) in self.nodes.iter().enumerate() {
            let (mode, data, rdev) = match node {
                Node::Dir => (0o040_755, Vec::new(), (0, 0)),
                Node::File(src, mode) => (
                    0o100_000 | mode,
                    std::fs::read(src).with_context(|| format!("read {}", src.display()))?,
                    (0, 0),
                ),
                Node::Bytes(data, mode) => (0o100_000 | mode, data.clone(), (0, 0)),
                Node::Symlink(target) => (0o120_777, target.as_bytes().to_vec(), (0, 0)),
                Node::CharDev(major, minor) => (0o020_600, Vec::new(), (*major, *minor)),
            };
            entry(&mut w, ino as u32 + 1, path, mode, &data, rdev)?;
        }
        entry(&mut w, 0, "TRAILER!!!", 0, &[], (0, 0))?;
        drop(w.into_inner().map_err(|e| e.into_error())?);
        let status = gzip.wait()?;
        if !status.success() {
            bail!("gzip failed ({status})");
        }
        Ok(())
    }
}

/// One newc header, the NUL-terminated name and the data, each padded to 4 bytes.
fn entry(
    w: &mut impl Write,
    ino: u32,
    name: &str,
    mode: u32,
    data: &[u8],
    (rmajor, rminor): (u32, u32),
) -> std::io::Result<()> {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rmajor,
        rminor,
        name.len() as u32 + 1,
        0, // check
    ];
    let mut header = String::from("070701");
    for f in fields {
        header.push_str(&format!("{f:08x}"));
    }
    w.write_all(header.as_bytes())?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad(w, header.len() + name.len() + 1)?;
    w.write_all(data)?;
    pad(w, data.len())
}

fn pad(w: &mut impl Write, len: usize) -> std::io::Result<()> {
    w.write_all(&[0; 3][..(4 - len % 4) % 4])
}
