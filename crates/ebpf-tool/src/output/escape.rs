//! Bytes other processes control (a `comm`, a string argument) never reach the terminal
//! raw: anything outside printable ASCII, plus the backslash itself, becomes `\xNN`.
//! Spaces and double quotes are escaped too, so every `key=value` field stays one token
//! and a quoted string cannot end early.

use std::io::{self, Write};

/// Writes `bytes` with every byte outside `!`..=`~`, and `\` and `"`, as `\xNN`.
pub fn write_escaped(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_graphic() && b != b'\\' && b != b'"' {
            continue;
        }
        out.write_all(&bytes[start..i])?;
        write!(out, "\\x{b:02x}")?;
        start = i + 1;
    }
    out.write_all(&bytes[start..])
}

/// Writes `text` with control characters as `\xNN` but spaces and non-ASCII letters kept:
/// for names read from files (symbols), where readability matters and there is no
/// `key=value` framing to protect.
pub fn write_printable(out: &mut impl Write, text: &str) -> io::Result<()> {
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                write!(out, "\\x{b:02x}")?;
            }
        } else {
            write!(out, "{c}")?;
        }
    }
    Ok(())
}

/// `text` with control characters as `\\xNN`, for paths and names in status lines.
pub fn printable(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    write_printable(&mut out, text).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("write_printable writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, bytes).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn printable_keeps_spaces_but_not_controls() {
        let mut out = Vec::new();
        write_printable(&mut out, "geo::Circle::area() const\x1b").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "geo::Circle::area() const\\x1b"
        );
    }

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(escaped(b"bash"), "bash");
        assert_eq!(escaped(b"kworker/0:1-mm"), "kworker/0:1-mm");
    }

    #[test]
    fn control_space_backslash_and_non_ascii_are_escaped() {
        assert_eq!(escaped(b"\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(escaped(b"a b"), "a\\x20b");
        assert_eq!(escaped(b"a\\b"), "a\\x5cb");
        assert_eq!(escaped("é".as_bytes()), "\\xc3\\xa9");
        assert_eq!(escaped(b"\n"), "\\x0a");
    }
}
