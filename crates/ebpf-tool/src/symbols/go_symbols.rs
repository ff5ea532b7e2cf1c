//! What `Symbols` takes from a Go program's function table (`golang`): the functions no
//! symbol table names (all of them in a stripped binary), and each Go function's calling
//! convention.

use std::collections::{HashMap, HashSet};

use super::{
    CallConv, FunctionSymbol, SymbolSource, Symbols,
    elf::{self, ElfContents},
    golang::GoVersion,
};

impl Symbols {
    /// A Go program's functions: those its function table has that no symbol table named
    /// (all of them in a stripped binary), and every Go function's calling convention.
    pub(super) fn add_go(&mut self, contents: &ElfContents) {
        if contents.go_functions.is_empty() {
            return;
        }
        // Go's register ABI is amd64's (arm64 has another, not read here).
        let registers = contents.machine == object::elf::EM_X86_64
            && contents.go_version.is_none_or(GoVersion::passes_registers);
        let mut assembly = HashMap::new();
        for function in &contents.go_functions {
            assembly.insert(function.entry, function.assembly);
        }
        for function in &mut self.functions {
            if let Some(&asm) = assembly.get(&function.address) {
                let stack = !registers || asm || function.name.ends_with(".abi0");
                function.call = if stack {
                    CallConv::GoStack
                } else {
                    CallConv::GoRegisters
                };
            }
        }
        let known: HashSet<u64> = self.functions.iter().map(|f| f.address).collect();
        self.searched.push(SymbolSource::GoPclntab);
        for function in &contents.go_functions {
            if known.contains(&function.entry) {
                continue;
            }
            let Some(file_offset) = elf::file_offset(&self.text, function.entry) else {
                continue;
            };
            self.functions.push(FunctionSymbol {
                name: function.name.clone(),
                demangled: None,
                address: function.entry,
                size: function.end - function.entry,
                file_offset,
                offset_in_function: 0,
                ifunc: false,
                source: SymbolSource::GoPclntab,
                call: if !registers || function.assembly {
                    CallConv::GoStack
                } else {
                    CallConv::GoRegisters
                },
            });
        }
    }
}
