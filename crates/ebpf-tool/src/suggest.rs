//! "Did you mean" for unknown symbols: the closest names by edit similarity.

use strsim::jaro_winkler;

/// How many close names an error offers.
const MAX_SUGGESTIONS: usize = 5;
/// Below this Jaro-Winkler similarity a name is noise, not a suggestion.
const MIN_SIMILARITY: f64 = 0.8;
/// Names longer than this get no suggestions: comparing costs the product of the lengths,
/// for every symbol of the file.
const MAX_SUGGESTED_LEN: usize = 256;

/// The names most similar to `wanted`, best first. Only names of comparable length are
/// compared (a name half or twice as long is never similar enough), which keeps this
/// cheap on files with 100,000 symbols.
pub fn closest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    if wanted.len() > MAX_SUGGESTED_LEN {
        return Vec::new();
    }
    let comparable = wanted.len() / 2..=wanted.len() * 2;
    let mut scored: Vec<(f64, &str)> = names
        .filter(|name| *name != wanted && comparable.contains(&name.len()))
        .map(|name| (jaro_winkler(wanted, name), name))
        .filter(|(score, _)| *score >= MIN_SIMILARITY)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// The tail of an error message: "; did you mean 'a', 'b'?" or nothing.
pub fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = suggestions.iter().map(|s| format!("'{s}'")).collect();
    format!("; did you mean {}?", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_best_first() {
        let names = ["malloc", "calloc", "realloc", "free", "mallopt"];
        let got = closest("mallocc", names.into_iter());
        assert_eq!(got[0], "malloc");
        assert!(!got.contains(&"free".to_owned()));
    }

    #[test]
    fn renders_the_tail() {
        assert_eq!(did_you_mean(&[]), "");
        assert_eq!(
            did_you_mean(&["malloc".into(), "calloc".into()]),
            "; did you mean 'malloc', 'calloc'?"
        );
    }
}
