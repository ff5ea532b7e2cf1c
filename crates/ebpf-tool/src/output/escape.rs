//! Bytes other processes control (a `comm`, a string argument) never reach the terminal
//! raw. Unquoted fields (`comm=`, keys) keep printable ASCII only: anything else, and
//! spaces, `"` and `\`, becomes `\xNN`, so the field stays one token. Quoted string
//! values are escaped the logfmt way: spaces and printable UTF-8 kept, `\"`, `\\`, `\n`,
//! `\t`, `\r`, and `\xNN` for other control bytes, invalid UTF-8 and the invisible
//! characters that reorder or hide text (bidi controls, zero-width): SQL and paths read as
//! text, and a string cannot end its quotes early or move the cursor.

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

/// Writes the inside of a quoted string value (see the module's rules).
pub fn write_quoted(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.write_all(b"\\\"")?,
                '\\' => out.write_all(b"\\\\")?,
                '\n' => out.write_all(b"\\n")?,
                '\t' => out.write_all(b"\\t")?,
                '\r' => out.write_all(b"\\r")?,
                c if c.is_control() || is_invisible(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(out, "\\x{b:02x}")?;
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.write_all(c.encode_utf8(&mut buf).as_bytes())?;
                }
            }
        }
        for b in chunk.invalid() {
            write!(out, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// Characters that change how text around them is shown without being seen: bidi
/// embeddings, overrides and isolates, zero-width spaces and joiners, the BOM.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
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

    fn quoted(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        write_quoted(&mut out, bytes).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoted_strings_keep_spaces_and_escape_the_logfmt_way() {
        assert_eq!(
            quoted(b"CREATE TABLE t(id INTEGER)"),
            "CREATE TABLE t(id INTEGER)"
        );
        assert_eq!(quoted(br#"say "hi""#), r#"say \"hi\""#);
        assert_eq!(quoted(b"a\\b"), r"a\\b");
        assert_eq!(quoted(b"l1\nl2\tx\r"), r"l1\nl2\tx\r");
        assert_eq!(quoted(b"\x1b[31m\x7f"), r"\x1b[31m\x7f");
        assert_eq!(quoted("café".as_bytes()), "café");
        assert_eq!(quoted(b"\xff\xfeok"), r"\xff\xfeok");
        assert_eq!(
            quoted("a\u{202e}b\u{85}".as_bytes()),
            r"a\xe2\x80\xaeb\xc2\x85"
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
