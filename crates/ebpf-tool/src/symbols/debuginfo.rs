//! Symbols a stripped file left elsewhere: MiniDebugInfo (an xz-compressed ELF in
//! `.gnu_debugdata`, as Fedora ships) and separate debug files found by build id or
//! `.gnu_debuglink` (as Debian's -dbgsym packages install under /usr/lib/debug).

use std::{
    io::{self, Write},
    path::{Path, PathBuf},
};

use super::elf::DebugPointers;

/// Where debug files live.
pub const DEBUG_ROOT: &str = "/usr/lib/debug";

/// A decompressed MiniDebugInfo image larger than this is refused: a hostile file must not
/// make us allocate without bound.
const MAX_DEBUGDATA_BYTES: usize = 256 << 20;

/// Decompresses `.gnu_debugdata`; `None` (logged) when it is not valid xz.
pub fn decompress_debugdata(compressed: &[u8]) -> Option<Vec<u8>> {
    let mut out = Bounded {
        data: Vec::new(),
        limit: MAX_DEBUGDATA_BYTES,
    };
    match lzma_rs::xz_decompress(&mut io::Cursor::new(compressed), &mut out) {
        Ok(()) => Some(out.data),
        Err(err) => {
            log::debug!("ignoring .gnu_debugdata: {err}");
            None
        }
    }
}

/// A `Vec` writer that fails past `limit` bytes.
struct Bounded {
    data: Vec<u8>,
    limit: usize,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.data.len() + buf.len() > self.limit {
            return Err(io::Error::other("decompressed data too large"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The separate debug file for `binary`, in GDB's search order: by build id, then by
/// debuglink name next to the file, in its `.debug/`, and under /usr/lib/debug. A
/// debuglink candidate must match the recorded CRC32.
///
/// A `root` other than /usr/lib/debug (`--debuginfo DIR`) is searched first, in the same
/// layouts and also flat (`DIR/<debuglink name>`), then /usr/lib/debug.
pub fn find_debug_file(binary: &Path, pointers: &DebugPointers, root: &Path) -> Option<PathBuf> {
    let default = Path::new(DEBUG_ROOT);
    let roots: Vec<&Path> = if root == default {
        vec![root]
    } else {
        vec![root, default]
    };
    if let Some(id) = pointers.build_id.as_deref().filter(|id| id.len() >= 2) {
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        for root in &roots {
            let candidate = root
                .join(".build-id")
                .join(&hex[..2])
                .join(format!("{}.debug", &hex[2..]));
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let (name, crc) = pointers.debuglink.as_ref()?;
    let dir = binary.parent()?;
    let relative_dir = dir.strip_prefix("/").unwrap_or(dir);
    let mut candidates = vec![dir.join(name), dir.join(".debug").join(name)];
    if root != default {
        candidates.push(root.join(name));
    }
    candidates.extend(roots.iter().map(|root| root.join(relative_dir).join(name)));
    candidates
        .into_iter()
        .filter(|candidate| candidate != binary && candidate.is_file())
        .find(|candidate| crc_matches(candidate, *crc))
}

fn crc_matches(path: &Path, expected: u32) -> bool {
    use std::io::Read as _;
    let Ok(mut file) = crate::files::open_regular(path) else {
        return false;
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return hasher.finalize() == expected,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
}

/// The build id as hex, for messages.
pub fn build_id_hex(pointers: &DebugPointers) -> Option<String> {
    pointers
        .build_id
        .as_ref()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_xz() {
        assert_eq!(decompress_debugdata(b"definitely not xz"), None);
        assert_eq!(decompress_debugdata(&[]), None);
    }

    #[test]
    fn finds_by_build_id_first() {
        let root = std::env::temp_dir().join(format!("ebpf-tool-debugroot-{}", std::process::id()));
        let dir = root.join(".build-id/ab");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cdef.debug"), b"x").unwrap();
        let pointers = DebugPointers {
            build_id: Some(vec![0xab, 0xcd, 0xef]),
            ..Default::default()
        };
        assert_eq!(
            find_debug_file(Path::new("/nonexistent/bin"), &pointers, &root),
            Some(dir.join("cdef.debug"))
        );
        let none = DebugPointers {
            build_id: Some(vec![0x12, 0x34]),
            ..Default::default()
        };
        assert_eq!(
            find_debug_file(Path::new("/nonexistent/bin"), &none, &root),
            None
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn debuglink_needs_the_right_crc() {
        let dir = std::env::temp_dir().join(format!("ebpf-tool-debuglink-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".debug")).unwrap();
        std::fs::write(dir.join(".debug/app.debug"), b"debug symbols").unwrap();
        let binary = dir.join("app");
        let link = |crc| DebugPointers {
            debuglink: Some(("app.debug".into(), crc)),
            ..Default::default()
        };
        let right = crc32fast::hash(b"debug symbols");
        assert_eq!(
            find_debug_file(&binary, &link(right), Path::new("/nonexistent")),
            Some(dir.join(".debug/app.debug"))
        );
        assert_eq!(
            find_debug_file(&binary, &link(right ^ 1), Path::new("/nonexistent")),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
