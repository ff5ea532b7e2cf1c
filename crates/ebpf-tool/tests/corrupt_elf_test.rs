//! Hostile ELF files never crash the resolver: a corpus of truncated, bit-flipped and
//! crafted files, generated here from real binaries (the C and C++ fixtures and libc), must
//! each give a result or a clear error, never a panic. `fuzz/` runs the same entry point
//! under libFuzzer.

mod common;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::Path,
    time::Instant,
};

use ebpf_tool::symbols::Symbols;

/// Deterministic xorshift, so a failure names an input that can be made again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Everything the resolver does with a file, on one image; Err(description) on a panic.
fn exercise(image: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(symbols) =
            Symbols::from_image(Path::new("corrupt"), image, Path::new("/nonexistent"))
        {
            for spec in [
                "main",
                "fixture_target",
                "*",
                "fixture_*+1",
                "0x1000",
                "geo::scale",
                "malloc",
            ] {
                let _ = symbols.resolve(spec).map(|r| r.functions.len());
            }
            let _ = symbols.list(Some("a*")).len();
            let _ = symbols.keeps_frame_pointers();
        }
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn le16(image: &mut [u8], at: usize, value: u16) {
    image[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn le32(image: &mut [u8], at: usize, value: u32) {
    image[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn le64(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Crafted damage to the ELF header and section table of a 64-bit little-endian image.
fn crafted(original: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let shoff = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(original[0x3c..0x3e].try_into().unwrap()) as usize;
    let mut edit = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut image = original.to_vec();
        f(&mut image);
        out.push((name.to_owned(), image));
    };
    edit("section table past the end", &|i| {
        le64(i, 0x28, u64::MAX - 64)
    });
    edit("huge section count", &|i| le16(i, 0x3c, u16::MAX));
    edit("huge program header count", &|i| le16(i, 0x38, u16::MAX));
    edit("program headers past the end", &|i| le64(i, 0x20, 1 << 40));
    edit("string table index out of range", &|i| {
        le16(i, 0x3e, u16::MAX)
    });
    edit("wrong entry sizes", &|i| {
        le16(i, 0x3a, 1);
        le16(i, 0x36, 3);
    });
    for section in 0..shnum {
        let header = shoff + section * 64;
        if header + 64 > original.len() {
            break;
        }
        edit(&format!("section {section} offset past the end"), &|i| {
            le64(i, header + 0x18, u64::MAX / 2)
        });
        edit(&format!("section {section} size huge"), &|i| {
            le64(i, header + 0x20, u64::MAX / 2)
        });
        // sh_link pointing at itself: a symbol table that is its own string table.
        edit(&format!("section {section} linked to itself"), &|i| {
            le32(i, header + 0x28, section as u32)
        });
        edit(&format!("section {section} entry size 1"), &|i| {
            le64(i, header + 0x38, 1)
        });
    }
    out
}

#[test]
fn corrupt_elf_files_give_errors_never_panics() {
    let mut sources = vec![
        std::fs::read(common::target_fixture()).unwrap(),
        std::fs::read(common::build_cpp_fixture("geometry", &["-O2"])).unwrap(),
    ];
    if let Ok(libc) = ebpf_tool::target::resolve("libc") {
        sources.push(std::fs::read(libc).unwrap());
    }
    let started = Instant::now();
    let mut tried = 0usize;
    let mut failures = Vec::new();
    let mut check = |what: String, image: &[u8]| {
        tried += 1;
        if let Err(panic) = exercise(image) {
            failures.push(format!("{what}: {panic}"));
        }
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (n, original) in sources.iter().enumerate() {
        // Truncations: every length up to 4 KiB, then spread over the file.
        for len in (0..4096.min(original.len()))
            .step_by(7)
            .chain((0..original.len()).step_by(original.len() / 200 + 1))
        {
            check(format!("source {n} cut at {len}"), &original[..len]);
        }
        // Bit flips: one, and a burst of 64, at random places (headers weighted in).
        for round in 0..300 {
            let mut image = original.clone();
            let flips = if round % 2 == 0 { 1 } else { 64 };
            for _ in 0..flips {
                let at = if rng.below(3) == 0 {
                    rng.below(256.min(image.len()))
                } else {
                    rng.below(image.len())
                };
                image[at] ^= 1 << rng.below(8);
            }
            check(format!("source {n} flip round {round}"), &image);
        }
        for (what, image) in crafted(original) {
            check(format!("source {n} {what}"), &image);
        }
    }
    // MiniDebugInfo that is not xz, and xz that is not an ELF.
    let mut with_garbage = sources[0].clone();
    with_garbage.extend_from_slice(b"\xfd7zXZ\x00garbage");
    check("garbage xz".into(), &with_garbage);
    eprintln!(
        "tried {tried} corrupt ELF inputs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {tried} inputs panicked: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
}
