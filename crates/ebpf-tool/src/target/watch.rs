//! Notices when a traced file changes under its probes. A uprobe sits at an offset of an
//! inode: when the file is rewritten in place, every process that maps it afterwards
//! gets the breakpoint at that offset of the new code, in the middle of some other
//! instruction (measured: the next run of an overwritten program segfaulted). When the
//! path is replaced (a package upgrade renames a new file over it), the probes stay on
//! the old inode and new processes run untraced. Either way the run must know at once:
//! inotify on the file and on its directory, and a size/mtime/identity check on every
//! housekeeping tick for filesystems where inotify says nothing.

use std::{
    ffi::OsString,
    fs::File,
    io,
    os::{
        fd::{AsFd as _, AsRawFd, RawFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

/// How the traced file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Its contents were written (same inode).
    Modified,
    /// The path now names another file, or none.
    Replaced,
}

/// What the file looked like when the probes went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl Shape {
    fn of(meta: &std::fs::Metadata) -> Shape {
        Shape {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

pub struct FileWatch {
    path: PathBuf,
    name: OsString,
    /// The file as probed, held open to look at it even after it is replaced.
    file: File,
    shape: Shape,
    inotify: Inotify,
    file_watch: Option<WatchDescriptor>,
    /// A replacement was reported: this watch has nothing more to say (the caller
    /// watches the new file).
    replaced: bool,
}

impl FileWatch {
    /// Starts watching `path`, the file the probes are on. A filesystem whose files
    /// inotify cannot watch still gets the periodic check (`changes`), a little later.
    pub fn new(path: &Path) -> io::Result<FileWatch> {
        let file = crate::files::open_regular(path)?;
        let shape = Shape::of(&file.metadata()?);
        let inotify = Inotify::init()?;
        let file_watch = inotify
            .watches()
            .add(
                path,
                WatchMask::MODIFY
                    | WatchMask::CLOSE_WRITE
                    | WatchMask::ATTRIB
                    | WatchMask::MOVE_SELF
                    | WatchMask::DELETE_SELF,
            )
            .ok();
        // The directory, for a new file renamed over the path (a package upgrade); its
        // events are told apart by name.
        if let Some(dir) = path.parent() {
            let _ = inotify.watches().add(
                dir,
                WatchMask::MOVED_TO | WatchMask::CREATE | WatchMask::DELETE,
            );
        }
        Ok(FileWatch {
            path: path.to_owned(),
            name: path.file_name().unwrap_or_default().to_owned(),
            file,
            shape,
            inotify,
            file_watch,
            replaced: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what inotify queued and checks the file: the change, if any.
    pub fn changes(&mut self) -> Option<Change> {
        let mut noticed = None;
        {
            let mut buffer = [0u8; 4096];
            while let Ok(events) = self.inotify.read_events(&mut buffer) {
                let mut any = false;
                for event in events {
                    any = true;
                    let on_file = Some(&event.wd) == self.file_watch.as_ref();
                    let on_name = event.name == Some(self.name.as_os_str());
                    // (CLOSE_WRITE and ATTRIB only wake us: the checks below decide.)
                    if on_file && event.mask.contains(EventMask::MODIFY) {
                        noticed = Some(noticed.unwrap_or(Change::Modified));
                    }
                    if (on_file
                        && event
                            .mask
                            .intersects(EventMask::MOVE_SELF | EventMask::DELETE_SELF))
                        || (!on_file && on_name)
                    {
                        noticed = Some(Change::Replaced);
                    }
                }
                if !any {
                    break;
                }
            }
        }
        // The check that needs no inotify: the path still names the probed inode, and the
        // inode still has the size and mtime it had. What is reported becomes the new
        // baseline, so each change is said once.
        let replaced = match std::fs::metadata(&self.path) {
            Ok(now) => now.dev() != self.shape.dev || now.ino() != self.shape.ino,
            Err(_) => true,
        };
        if replaced || noticed == Some(Change::Replaced) {
            let first = !self.replaced;
            self.replaced = true;
            return first.then_some(Change::Replaced);
        }
        if self.replaced {
            return None;
        }
        match self.file.metadata().map(|m| Shape::of(&m)) {
            Ok(now) if now == self.shape => noticed,
            Ok(now) => {
                self.shape = now;
                Some(noticed.unwrap_or(Change::Modified))
            }
            Err(_) => Some(Change::Modified),
        }
    }
}

/// Readable when inotify has news: lets the run loop wait on it.
impl AsRawFd for FileWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_writes_in_place_and_replacement() {
        let dir = std::env::temp_dir().join(format!("ebpf-tool-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lib.so");
        std::fs::write(&path, b"first version").unwrap();
        let mut watch = FileWatch::new(&path).unwrap();
        assert_eq!(watch.changes(), None);
        std::fs::write(&path, b"second version, longer").unwrap();
        assert_eq!(watch.changes(), Some(Change::Modified));

        let mut watch = FileWatch::new(&path).unwrap();
        let staged = dir.join("lib.so.dpkg-new");
        std::fs::write(&staged, b"upgraded").unwrap();
        std::fs::rename(&staged, &path).unwrap();
        assert_eq!(watch.changes(), Some(Change::Replaced));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
