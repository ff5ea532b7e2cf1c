//! GNU IFUNCs (`strlen`, `memcpy` in glibc): the symbol is a resolver that picks an
//! implementation when the program starts. A probe on the resolver would see nothing.
//!
//! When the library is one ebpf-tool itself has loaded (libc, libm, ...), the dynamic
//! linker has already run the resolver on this same CPU: `dlsym` on that library returns
//! the chosen implementation, and /proc/self/maps turns its address into a file offset.
//! Other libraries are not loaded here on purpose: loading runs their constructors.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::Path,
};

/// The file offset, in `library`, of the implementation the IFUNC `symbol` resolves to.
pub fn resolve(library: &Path, symbol: &str) -> Result<u64, String> {
    let meta = std::fs::metadata(library).map_err(|e| e.to_string())?;
    let maps = std::fs::read_to_string("/proc/self/maps").map_err(|e| e.to_string())?;
    let mappings: Vec<Mapping> = maps.lines().filter_map(Mapping::parse).collect();
    let same_file = |m: &Mapping| m.inode == meta.ino() && m.dev == meta.dev();
    let loaded = mappings
        .iter()
        .find(|m| same_file(m))
        .ok_or("the library is not one ebpf-tool has loaded itself")?;
    let path = CString::new(loaded.path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let name = CString::new(symbol).map_err(|e| e.to_string())?;
    // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded (running no
    // code); dlsym then runs the IFUNC resolver, which glibc already ran at start-up.
    let address = unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return Err("the library is not loaded through the dynamic linker here".into());
        }
        let address = libc::dlsym(handle, name.as_ptr()) as u64;
        libc::dlclose(handle);
        address
    };
    if address == 0 {
        return Err(format!("dlsym found no '{symbol}'"));
    }
    mappings
        .iter()
        .find(|m| same_file(m) && (m.start..m.end).contains(&address))
        .map(|m| address - m.start + m.offset)
        .ok_or_else(|| "the implementation lies in another file".into())
}

/// One line of /proc/PID/maps.
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    dev: u64,
    inode: u64,
    path: std::path::PathBuf,
}

impl Mapping {
    /// `start-end perms offset major:minor inode path`
    fn parse(line: &str) -> Option<Mapping> {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let _perms = fields.next()?;
        let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
        let (major, minor) = fields.next()?.split_once(':')?;
        let inode = fields.next()?.parse().ok()?;
        let path = fields.collect::<Vec<_>>().join(" ");
        let (major, minor) = (
            u64::from_str_radix(major, 16).ok()?,
            u64::from_str_radix(minor, 16).ok()?,
        );
        Some(Mapping {
            start: u64::from_str_radix(start, 16).ok()?,
            end: u64::from_str_radix(end, 16).ok()?,
            offset,
            dev: libc::makedev(major as u32, minor as u32),
            inode,
            path: path.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_maps_line() {
        let m = Mapping::parse(
            "7f12a0028000-7f12a01bd000 r-xp 00028000 fe:01 1835099                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(
            (m.start, m.end, m.offset, m.inode),
            (0x7f12a0028000, 0x7f12a01bd000, 0x28000, 1835099)
        );
        assert_eq!(m.dev, libc::makedev(0xfe, 1));
        assert_eq!(m.path, Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6"));
    }

    #[test]
    fn resolves_libc_strlen_to_an_implementation() {
        let libc_path = crate::target::resolve("libc.so.6").expect("libc");
        let offset = resolve(&libc_path, "strlen").expect("strlen is an IFUNC in glibc");
        let symbols = super::super::Symbols::read(&libc_path).unwrap();
        let resolver = symbols
            .functions()
            .iter()
            .find(|f| f.name == "strlen")
            .unwrap();
        assert!(resolver.ifunc);
        assert_ne!(
            offset, resolver.file_offset,
            "the implementation is not the resolver"
        );
    }
}
