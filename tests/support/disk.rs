//! A small real file system to fill: a tmpfs mounted on a test's folder,
//! and a filler file that takes its space (all of it, or all but a given
//! number of bytes) and gives it back.
//!
//! Mounting needs root (CAP_SYS_ADMIN), which the project's machines and CI
//! have: where mounting is refused the test fails and says so, it never
//! tests something else instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted on a folder, unmounted on drop (lazily, so a
/// panic with files still open cannot leave it behind).
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`) on `path`.
    ///
    /// # Panics
    /// When it cannot be mounted, saying why and what the test needs.
    pub fn mount(path: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "this test fills a {size} tmpfs mounted on the ledger's folder and needs root with CAP_SYS_ADMIN and \
             `mount` (util-linux), as on the project's machines and in CI; mounting it failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { path: path.to_owned() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `path` until the file system refuses another byte; returns how
/// many bytes it took.
pub fn fill(path: &Path) -> u64 {
    fill_leaving(path, 0)
}

/// Fills the file system holding `path` with the file `path`, then gives
/// back `leave` bytes (rounded by the file system to its blocks): what is
/// left for everyone else. Returns the filler's size.
pub fn fill_leaving(path: &Path, leave: u64) -> u64 {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open the filler");
    let block = vec![0xA5u8; 64 * 1024];
    let mut written = f.metadata().map(|m| m.len()).unwrap_or(0);
    for size in [block.len(), 4096, 512, 1] {
        loop {
            match f.write(&block[..size]) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    let size = written.saturating_sub(leave);
    f.set_len(size).expect("give space back");
    let _ = f.sync_all();
    size
}
