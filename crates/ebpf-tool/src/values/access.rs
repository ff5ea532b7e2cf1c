//! Values named as in the source: `name`, `name->field`, `name.field`, `name[N]`,
//! chained (`r->hdr.kind`, `argv[1]`, `this->size`). Only the syntax: what they mean is
//! the debug info's to say (`dwarf`).

/// One step after the parameter's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `->field`: through a pointer.
    Arrow(String),
    /// `.field`: inside a struct.
    Dot(String),
    /// `[N]`: an element of an array or of what a pointer points to.
    Index(u64),
}

/// A value named from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub root: String,
    pub steps: Vec<Step>,
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `r->hdr.kind`, `argv[1]`, `this->size`; None when `text` is not such a name.
pub fn parse_access(text: &str) -> Option<Access> {
    let root_end = text.find(['-', '.', '[']).unwrap_or(text.len());
    let root = &text[..root_end];
    if !is_ident(root) {
        return None;
    }
    let mut steps = Vec::new();
    let mut rest = &text[root_end..];
    while !rest.is_empty() {
        let (step, after) = if let Some(after) = rest.strip_prefix("->") {
            let end = after.find(['-', '.', '[']).unwrap_or(after.len());
            (Step::Arrow(after[..end].to_owned()), &after[end..])
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['-', '.', '[']).unwrap_or(after.len());
            (Step::Dot(after[..end].to_owned()), &after[end..])
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            (
                Step::Index(after[..end].trim().parse().ok()?),
                &after[end + 1..],
            )
        } else {
            return None;
        };
        if let Step::Arrow(f) | Step::Dot(f) = &step
            && !is_ident(f)
        {
            return None;
        }
        steps.push(step);
        rest = after;
    }
    Some(Access {
        root: root.to_owned(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_parse() {
        let a = parse_access("r->hdr.kind").unwrap();
        assert_eq!(a.root, "r");
        assert_eq!(
            a.steps,
            [Step::Arrow("hdr".into()), Step::Dot("kind".into())]
        );
        assert_eq!(parse_access("argv[1]").unwrap().steps, [Step::Index(1)]);
        assert!(parse_access("0").is_none());
        assert!(parse_access("%rdi").is_none());
        assert!(parse_access("+8(arg0)").is_none());
        assert!(parse_access("r->").is_none());
    }
}
