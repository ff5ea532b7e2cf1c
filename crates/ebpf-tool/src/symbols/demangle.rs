//! Mangled symbol names -> what people write: Rust (legacy and v0) and C++ (Itanium).

/// The readable name of a mangled symbol, or `None` when it is not mangled. Rust names
/// come without their hash (`mycrate::module::function`); C++ names with their parameter
/// list (`geo::Circle::area() const`).
pub fn demangle(raw: &str) -> Option<String> {
    if let Ok(rust) = rustc_demangle::try_demangle(raw) {
        return Some(format!("{rust:#}"));
    }
    if !raw.starts_with("_Z") {
        return None;
    }
    let symbol = cpp_demangle::Symbol::new(raw).ok()?;
    symbol.demangle().ok()
}

/// Fills in the readable names, on every CPU for large tables: demangling is most of the
/// cost of reading a big C++ or Rust library (librustc_driver: 81,000 functions, ~0.25 s
/// on one CPU).
pub(super) fn demangle_all(functions: &mut [super::FunctionSymbol]) {
    const SERIAL_BELOW: usize = 4096;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if functions.len() < SERIAL_BELOW || workers == 1 {
        for f in functions {
            f.demangled = demangle(&f.name);
        }
        return;
    }
    let chunk = functions.len().div_ceil(workers);
    std::thread::scope(|scope| {
        for part in functions.chunks_mut(chunk) {
            scope.spawn(move || {
                for f in part {
                    f.demangled = demangle(&f.name);
                }
            });
        }
    });
}

/// A C++ name without its parameter list and trailing qualifiers, the way people name a
/// function: `geo::Circle::area() const` -> `geo::Circle::area`. Other names unchanged.
pub fn without_parameters(demangled: &str) -> &str {
    let bytes = demangled.as_bytes();
    let mut angle = 0i32;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => angle += 1,
            b'>' => angle -= 1,
            // `operator()` names a function; its "()" is not the parameter list.
            b'(' if angle == 0 && demangled[..i].ends_with("operator") => {
                i += 2;
                continue;
            }
            b'(' if angle == 0 && i > 0 => return &demangled[..i],
            _ => {}
        }
        i += 1;
    }
    demangled
}

/// Whitespace-insensitive comparison for parameter lists: `area(double)const` and
/// `area(double) const` are the same signature.
pub fn same_signature(a: &str, b: &str) -> bool {
    a.chars()
        .filter(|c| !c.is_whitespace())
        .eq(b.chars().filter(|c| !c.is_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpp_names_with_and_without_parameters() {
        let full = demangle("_ZNK3geo6Circle4areaEv").unwrap();
        assert_eq!(full, "geo::Circle::area() const");
        assert_eq!(without_parameters(&full), "geo::Circle::area");
        let overload = demangle("_ZN3geo5scaleEd").unwrap();
        assert_eq!(overload, "geo::scale(double)");
        assert_eq!(
            without_parameters("std::vector<int, std::allocator<int> >::push_back(int const&)"),
            "std::vector<int, std::allocator<int> >::push_back"
        );
        assert_eq!(
            without_parameters("Functor::operator()(int)"),
            "Functor::operator()"
        );
    }

    #[test]
    fn rust_legacy_and_v0_without_hash() {
        assert_eq!(
            demangle("_ZN7mycrate6module8function17h0123456789abcdefE").as_deref(),
            Some("mycrate::module::function")
        );
        assert_eq!(
            demangle("_RNvNtCs1234_7mycrate6module8function").as_deref(),
            Some("mycrate::module::function")
        );
    }

    #[test]
    fn plain_c_names_are_not_mangled() {
        assert_eq!(demangle("malloc"), None);
        assert_eq!(demangle("_Zgarbage"), None);
    }

    #[test]
    fn signatures_ignore_spaces() {
        assert!(same_signature("area(double)const", "area(double) const"));
        assert!(!same_signature("area(int)", "area(double)"));
    }
}
