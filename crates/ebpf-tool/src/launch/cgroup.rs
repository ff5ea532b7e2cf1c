//! A cgroup (v2) of our own for a command and everything it starts: children join their
//! parent's cgroup at fork, so the kernel programs follow forks and execs by comparing
//! one id (`bpf_get_current_cgroup_id`), with no map and no fork tracepoint.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
};

/// A cgroup directory this run made, removed when dropped (once it is empty).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    /// The id the kernel reports for tasks in it: its directory's inode number.
    pub id: u64,
}

impl Cgroup {
    /// Makes `ebpf-tool.<pid>` at the top of the cgroup v2 hierarchy.
    pub fn create() -> io::Result<Cgroup> {
        let root = unified_mount()?;
        let dir = root.join(format!("ebpf-tool.{}", std::process::id()));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let id = fs::metadata(&dir)?.ino();
        Ok(Cgroup { dir, id })
    }

    /// Moves process `pid` (and, from then on, every process it starts) into the cgroup.
    pub fn add(&self, pid: u32) -> io::Result<()> {
        let mut procs = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        procs.write_all(pid.to_string().as_bytes())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Fails while a process the command started still runs in it: left for it.
        if let Err(err) = fs::remove_dir(&self.dir) {
            log::debug!("cgroup {} kept: {err}", self.dir.display());
        }
    }
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on hybrid systems).
fn unified_mount() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    mounts
        .lines()
        .find_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
            let (fields, rest) = line.split_once(" - ")?;
            (rest.split(' ').next()? == "cgroup2")
                .then(|| PathBuf::from(unescape_mount_path(fields.split(' ').nth(4).unwrap_or(""))))
        })
        .ok_or_else(|| io::Error::other("no cgroup v2 hierarchy is mounted"))
}

/// mountinfo writes spaces, tabs, newlines and backslashes in paths as `\ooo`.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = path.get(i + 1..i + 4)
            && let Ok(byte) = u8::from_str_radix(octal, 8)
        {
            out.push(byte);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path(r"/a\040b\\c"), r"/a b\\c");
        assert_eq!(unescape_mount_path(r"/sys/fs/cgroup"), "/sys/fs/cgroup");
    }
}
