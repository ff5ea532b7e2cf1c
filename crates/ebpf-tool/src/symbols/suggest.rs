//! "Did you mean" for unknown symbols: the closest names by edit similarity.

use strsim::jaro_winkler;

/// How many close names an error offers.
const MAX_SUGGESTIONS: usize = 5;
/// Below this Jaro-Winkler similarity a name is noise, not a suggestion.
const MIN_SIMILARITY: f64 = 0.8;

/// The names most similar to `wanted`, best first.
pub fn closest<'a>(wanted: &str, names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = names
        .filter(|name| *name != wanted)
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
