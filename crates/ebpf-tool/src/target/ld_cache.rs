//! Library names -> paths through the dynamic linker's cache, `/etc/ld.so.cache` (the
//! "glibc-ld.so.cache1.1" format, which `ldconfig -p` prints), without running ldconfig.

use std::{
    fs,
    path::{Path, PathBuf},
};

pub const SYSTEM_CACHE: &str = "/etc/ld.so.cache";

const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
/// magic(20) nlibs(4) len_strings(4) flags(1) pad(3) extension_offset(4) unused(12)
const HEADER_LEN: usize = 48;
/// flags(4) key(4) value(4) osversion(4) hwcap(8)
const ENTRY_LEN: usize = 24;
/// `FLAG_ELF_LIBC6`: the entry is a glibc shared object.
const FLAG_ELF_LIBC6: u32 = 0x0003;
const FLAG_TYPE_MASK: u32 = 0x00ff;
const FLAG_ARCH_MASK: u32 = 0xff00;
/// The ABI tag of this machine's libraries: x86-64 and AArch64 each have their own.
#[cfg(target_arch = "x86_64")]
const FLAG_THIS_ARCH: u32 = 0x0300;
#[cfg(target_arch = "aarch64")]
const FLAG_THIS_ARCH: u32 = 0x0a00;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const FLAG_THIS_ARCH: u32 = 0;

/// The (soname, path) pairs of the cache that fit this machine's ABI.
#[derive(Debug, Default)]
pub struct LdCache {
    entries: Vec<(String, PathBuf)>,
}

impl LdCache {
    pub fn load_system() -> std::io::Result<Self> {
        Self::load(Path::new(SYSTEM_CACHE))
    }

    pub fn load(path: &Path) -> std::io::Result<Self> {
        // A container's cache is the container's to write: bounded, and never a FIFO.
        Ok(Self::parse(&crate::files::read_regular(path, 64 << 20)?))
    }

    /// Parses a cache image; anything malformed is skipped rather than trusted.
    pub fn parse(data: &[u8]) -> Self {
        // Old caches put a "ld.so-1.7.0" table first; the new one follows it.
        let Some(start) = data.windows(MAGIC.len()).position(|w| w == MAGIC) else {
            return Self::default();
        };
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        // Offsets in the new format count from the start of the new header.
        let string_at = |offset: u32| -> Option<&str> {
            let rest = data.get(start + offset as usize..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            std::str::from_utf8(&rest[..end]).ok()
        };
        let Some(nlibs) = u32_at(start + MAGIC.len()) else {
            return Self::default();
        };
        let mut entries = Vec::new();
        for i in 0..nlibs as usize {
            let at = start + HEADER_LEN + i * ENTRY_LEN;
            let (Some(flags), Some(key), Some(value)) =
                (u32_at(at), u32_at(at + 4), u32_at(at + 8))
            else {
                break;
            };
            let this_abi = flags & FLAG_TYPE_MASK == FLAG_ELF_LIBC6
                && flags & FLAG_ARCH_MASK == FLAG_THIS_ARCH;
            if !this_abi {
                continue;
            }
            if let (Some(soname), Some(path)) = (string_at(key), string_at(value)) {
                entries.push((soname.to_owned(), PathBuf::from(path)));
            }
        }
        Self { entries }
    }

    /// The distinct files a library name means: `libc.so.6` exactly, or `libc` / `c` /
    /// `libc.so` as the prefix of a soname up to ".so".
    pub fn find(&self, name: &str) -> Vec<PathBuf> {
        self.find_in(name, |p| fs::canonicalize(p).ok())
    }

    /// The file of exactly this soname, as the loader looks one up.
    pub fn find_exact(&self, soname: &str) -> Option<PathBuf> {
        self.entries
            .iter()
            .find(|(name, _)| name == soname)
            .map(|(_, path)| path.clone())
    }

    /// As `find`, with `real` turning each cache path into the file it names (paths in
    /// another mount namespace resolve differently).
    pub fn find_in(&self, name: &str, real: impl Fn(&Path) -> Option<PathBuf>) -> Vec<PathBuf> {
        let exact: Vec<&PathBuf> = self
            .entries
            .iter()
            .filter(|(soname, _)| soname == name)
            .map(|(_, path)| path)
            .collect();
        let matches = if exact.is_empty() {
            let stem = name.strip_suffix(".so").unwrap_or(name);
            let with_lib = if stem.starts_with("lib") {
                stem.to_owned()
            } else {
                format!("lib{stem}")
            };
            let prefix = format!("{with_lib}.so");
            self.entries
                .iter()
                .filter(|(soname, _)| soname.starts_with(&prefix))
                .map(|(_, path)| path)
                .collect()
        } else {
            exact
        };
        // Several entries may be one file reached through different directories.
        let mut files: Vec<PathBuf> = matches
            .into_iter()
            .map(|p| real(p).unwrap_or_else(|| p.clone()))
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

impl LdCache {
    /// Library names (sonames up to ".so", as a user types them) close to `name`: those
    /// it is the start of (`libsqlite` -> `libsqlite3`), else the most similar, compared
    /// without the "lib" every name shares.
    pub fn close_names(&self, name: &str) -> Vec<String> {
        let wanted = library_stem(name);
        let mut stems: Vec<String> = self
            .entries
            .iter()
            .map(|(soname, _)| library_stem(soname).into_owned())
            .collect();
        stems.sort_unstable();
        stems.dedup();
        let longer: Vec<String> = stems
            .iter()
            .filter(|stem| stem.len() > wanted.len() && stem.starts_with(wanted.as_ref()))
            .take(3)
            .cloned()
            .collect();
        if !longer.is_empty() {
            return longer;
        }
        let bare = |stem: &'_ str| stem.strip_prefix("lib").unwrap_or(stem).to_owned();
        let bare_stems: Vec<String> = stems.iter().map(|s| bare(s)).collect();
        let wanted = bare(&wanted);
        // Short names are a typo or two apart (`libsll`), which similarity scores miss.
        let typos = (wanted.len() / 4).max(1);
        let mut near: Vec<(usize, &String)> = bare_stems
            .iter()
            .map(|stem| (strsim::osa_distance(&wanted, stem), stem))
            .filter(|(distance, _)| *distance <= typos)
            .collect();
        near.sort();
        let mut names: Vec<String> = near.iter().map(|(_, stem)| stem.to_string()).collect();
        for close in crate::suggest::closest(&wanted, bare_stems.iter().map(String::as_str)) {
            if !names.contains(&close) {
                names.push(close);
            }
        }
        names.truncate(3);
        names
            .into_iter()
            .map(|close| format!("lib{close}"))
            .collect()
    }
}

/// `libsqlite3.so.0` -> `libsqlite3`; `sqlite` -> `libsqlite`.
fn library_stem(name: &str) -> std::borrow::Cow<'_, str> {
    let stem = name.split(".so").next().unwrap_or(name);
    if stem.starts_with("lib") {
        stem.into()
    } else {
        format!("lib{stem}").into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a cache image in the new format with the given (flags, soname, path) entries.
    fn image(entries: &[(u32, &str, &str)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let strings_start = HEADER_LEN + entries.len() * ENTRY_LEN;
        let mut table = Vec::new();
        for (flags, key, value) in entries {
            let key_off = strings_start + strings.len();
            strings.extend_from_slice(key.as_bytes());
            strings.push(0);
            let value_off = strings_start + strings.len();
            strings.extend_from_slice(value.as_bytes());
            strings.push(0);
            table.extend_from_slice(&flags.to_ne_bytes());
            table.extend_from_slice(&(key_off as u32).to_ne_bytes());
            table.extend_from_slice(&(value_off as u32).to_ne_bytes());
            table.extend_from_slice(&[0; 12]);
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        out.resize(HEADER_LEN, 0);
        out.extend(table);
        out.extend(strings);
        out
    }

    const OURS: u32 = FLAG_ELF_LIBC6 | FLAG_THIS_ARCH;

    #[test]
    fn finds_by_soname_short_name_and_bare_name() {
        let cache = LdCache::parse(&image(&[
            (OURS, "libc.so.6", "/nonexistent/libc.so.6"),
            (OURS, "libcap.so.2", "/nonexistent/libcap.so.2"),
        ]));
        let libc = vec![PathBuf::from("/nonexistent/libc.so.6")];
        assert_eq!(cache.find("libc.so.6"), libc);
        assert_eq!(cache.find("libc"), libc);
        assert_eq!(cache.find("c"), libc);
        assert_eq!(cache.find("libc.so"), libc);
        assert_eq!(
            cache.find("libcap"),
            vec![PathBuf::from("/nonexistent/libcap.so.2")]
        );
        assert!(cache.find("libnothing").is_empty());
    }

    #[test]
    fn a_missing_library_name_gets_close_names() {
        let cache = LdCache::parse(&image(&[
            (OURS, "libsqlite3.so.0", "/nonexistent/libsqlite3.so.0"),
            (OURS, "libsqlite3.so", "/nonexistent/libsqlite3.so"),
            (OURS, "libssl.so.3", "/nonexistent/libssl.so.3"),
            (OURS, "libz.so.1", "/nonexistent/libz.so.1"),
        ]));
        assert!(cache.find("libsqlite").is_empty());
        assert_eq!(cache.close_names("libsqlite"), ["libsqlite3"]);
        assert_eq!(cache.close_names("sqlite"), ["libsqlite3"]);
        assert_eq!(cache.close_names("libsll"), ["libssl"]);
        assert!(cache.close_names("libnothingatall").is_empty());
    }

    #[test]
    fn skips_other_abis_and_reports_ambiguity() {
        let cache = LdCache::parse(&image(&[
            (
                FLAG_ELF_LIBC6,
                "libssl.so.3",
                "/nonexistent/i386/libssl.so.3",
            ),
            (OURS, "libssl.so.3", "/nonexistent/libssl.so.3"),
            (OURS, "libssl.so.1.1", "/nonexistent/libssl.so.1.1"),
        ]));
        assert_eq!(
            cache.find("libssl"),
            vec![
                PathBuf::from("/nonexistent/libssl.so.1.1"),
                PathBuf::from("/nonexistent/libssl.so.3")
            ]
        );
        assert_eq!(
            cache.find("libssl.so.3"),
            vec![PathBuf::from("/nonexistent/libssl.so.3")]
        );
    }

    #[test]
    fn garbage_gives_an_empty_cache() {
        assert!(LdCache::parse(b"not a cache").entries.is_empty());
        let mut truncated = image(&[(OURS, "libc.so.6", "/x")]);
        truncated.truncate(HEADER_LEN + 5);
        assert!(LdCache::parse(&truncated).entries.is_empty());
    }

    #[test]
    fn the_system_cache_knows_libc() {
        let cache = LdCache::load_system().expect("every glibc system has a linker cache");
        assert!(!cache.find("libc").is_empty(), "no libc in {SYSTEM_CACHE}");
    }
}
