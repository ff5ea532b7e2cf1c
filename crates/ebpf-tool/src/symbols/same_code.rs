//! Functions that are one piece of code under several names (aliases, IFUNCs resolved
//! to one implementation): one probe each, named once, with a note.

use std::collections::HashMap;

use super::{FunctionSymbol, Symbols};

impl Symbols {
    /// One function per probe point. Names that land on one point (aliases, or IFUNCs
    /// this CPU resolves to one implementation: `memcpy` and `memmove`) are probed once;
    /// where they are different functions by name, a note says the count holds both.
    pub(super) fn merge_same_code(
        &self,
        functions: Vec<FunctionSymbol>,
        notes: &mut Vec<String>,
    ) -> Vec<FunctionSymbol> {
        // Indexed by file offset: a glob over a large library (librustc_driver: 81,000
        // functions) made a linear search per function take 9 s.
        let mut kept: Vec<FunctionSymbol> = Vec::new();
        let mut kept_at: HashMap<u64, usize> = HashMap::new();
        let mut sharing: Vec<(usize, Vec<String>)> = Vec::new();
        let mut sharing_at: HashMap<usize, usize> = HashMap::new();
        for function in functions {
            match kept_at.get(&function.file_offset) {
                Some(&at) if kept[at].label() != function.label() => {
                    let label = function.label();
                    match sharing_at.get(&at) {
                        Some(&group) if !sharing[group].1.contains(&label) => {
                            sharing[group].1.push(label)
                        }
                        Some(_) => {}
                        None => {
                            sharing_at.insert(at, sharing.len());
                            sharing.push((at, vec![label]));
                        }
                    }
                }
                Some(_) => {}
                None => {
                    kept_at.insert(function.file_offset, kept.len());
                    kept.push(function);
                }
            }
        }
        if sharing.is_empty() {
            return kept;
        }
        // Every symbol at each shared offset, in symbol-table order, to name the
        // implementation an IFUNC resolved to.
        let mut at_offset: HashMap<u64, Vec<&FunctionSymbol>> = HashMap::new();
        for f in self.functions.iter().filter(|f| !f.ifunc) {
            at_offset.entry(f.file_offset).or_default().push(f);
        }
        for (at, others) in sharing {
            let first = &kept[at];
            let implementation = at_offset
                .get(&first.file_offset)
                .and_then(|all| all.iter().find(|f| f.label() != first.label()))
                .map(|f| format!("{} ", f.label()))
                .unwrap_or_default();
            notes.push(format!(
                "{} and {} run the same code on this CPU ({implementation}at file offset {:#x}): one probe, under the name {}, counts them all",
                first.label(),
                others.join(" and "),
                first.file_offset,
                first.label(),
            ));
        }
        kept
    }
}
