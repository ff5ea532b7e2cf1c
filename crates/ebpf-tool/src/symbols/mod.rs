//! File -> function offsets: reads an ELF file's symbol tables and answers "where does
//! FUNCTION start, as a file offset the kernel can put a uprobe on".

mod elf;
mod suggest;

use std::path::PathBuf;

pub use elf::{FunctionSymbol, SymbolSource, Symbols};

/// Why a function could not be resolved to a probe-able offset.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an ELF file")]
    NotElf { path: PathBuf },
    #[error("{path} is a malformed or unsupported ELF file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "function '{symbol}' not found in {path} (searched {searched}){}",
        suggest::did_you_mean(.suggestions)
    )]
    NotFound {
        symbol: String,
        path: PathBuf,
        searched: String,
        suggestions: Vec<String>,
    },
    #[error("'{symbol}' in {path} is {what}, not a function")]
    NotAFunction {
        symbol: String,
        path: PathBuf,
        what: &'static str,
    },
    #[error(
        "function '{symbol}' in {path} has address {address:#x}, which no executable segment holds"
    )]
    NotInText {
        symbol: String,
        path: PathBuf,
        address: u64,
    },
}
