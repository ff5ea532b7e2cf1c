//! Fuzzes the symbol resolver with arbitrary bytes as an ELF image:
//! `cargo +nightly fuzz run symbols` from `fuzz/` (cargo install cargo-fuzz).
#![no_main]

use std::path::Path;

use ebpf_tool::symbols::Symbols;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|image: &[u8]| {
    if let Ok(symbols) = Symbols::from_image(Path::new("fuzz"), image, Path::new("/nonexistent")) {
        for spec in ["main", "*", "f*+1", "0x1000", "a::b"] {
            let _ = symbols.resolve(spec);
        }
        let _ = symbols.list(Some("a"));
    }
});
