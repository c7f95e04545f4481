//! Claim extraction: the checkable sentences of a reply and their content words.

use std::collections::HashSet;

use crate::quantity::{parse, Parsed};
use crate::text::{is_stop_word, split_sentences, stem};

/// A word that says what a sentence is about: not a stop word, not part of a quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentWord {
    /// The matching stem (or a normalised identifier such as `zone 2`).
    pub stem: String,
    /// The word as written, lowercased (what a search query uses).
    pub surface: String,
    /// Its token index in the sentence.
    pub token: usize,
    /// Whether it is a name: an identifier, or written with a capital inside the sentence.
    /// (A capitalised first word is not known to be a name.)
    pub name: bool,
}

/// Month and weekday names: part of dates, not of subjects.
const CALENDAR_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

/// The content words of a parsed sentence, identifiers included (`line 3`).
pub fn content_words(parsed: &Parsed) -> Vec<ContentWord> {
    let mut out = Vec::new();
    for (i, t) in parsed.tokens.iter().enumerate() {
        if !t.is_word() || parsed.consumed.get(i).copied().unwrap_or(true) {
            continue;
        }
        let lower = t.lower.as_str();
        if lower.chars().count() < 2 || is_stop_word(lower) || CALENDAR_WORDS.contains(&lower) {
            continue;
        }
        out.push(ContentWord {
            stem: stem(lower),
            surface: lower.to_string(),
            token: i,
            name: i > 0 && t.text.chars().next().is_some_and(char::is_uppercase),
        });
    }
    for (token, name) in parsed.identifiers.iter().zip(&parsed.identifier_names) {
        out.push(ContentWord {
            stem: name.clone(),
            surface: name.clone(),
            token: *token,
            name: true,
        });
    }
    out.sort_by_key(|w| w.token);
    out
}

/// One checkable sentence of a reply.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The sentence, with Markdown markup removed.
    pub text: String,
    /// Its tokens and quantities.
    pub parsed: Parsed,
    /// Its content words.
    pub words: Vec<ContentWord>,
    /// The subject borrowed from an earlier sentence when this one starts with a pronoun or
    /// names nothing ("The Halden line opened in 1897. It is 38.6 km long."): the content
    /// words before the first quantity of the last sentence that had a name. Their `token`
    /// refers to that sentence.
    pub context: Vec<ContentWord>,
}

impl Claim {
    /// The search query: the claim's words without its numbers and units.
    pub fn query(&self) -> String {
        let mut seen = HashSet::new();
        self.context
            .iter()
            .chain(&self.words)
            .filter(|w| seen.insert(w.surface.clone()))
            .map(|w| w.surface.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Phrases that mark a sentence as a hedge or a remark about the answer itself, not a claim.
const HEDGES: &[&str] = &[
    "i think",
    "i believe",
    "i'm not sure",
    "i am not sure",
    "not sure",
    "i don't know",
    "i do not know",
    "if i recall",
    "if i remember",
    "as far as i know",
    "to my knowledge",
    "i cannot verify",
    "i can't verify",
    "i could not verify",
    "i couldn't verify",
    "please check",
    "please verify",
    "you may want to check",
    "double-check",
    "double check",
    "i guess",
    "probably",
    "perhaps",
    "maybe",
    "it seems",
    "might be",
    "may be around",
    "could be",
    "for example",
    "for instance",
    "let's say",
    "suppose",
    "imagine",
];

/// Pronouns that make a sentence borrow its subject from the previous one.
const PRONOUNS: &[&str] = &[
    "it", "its", "they", "their", "this", "these", "she", "he", "her", "his",
];

/// Whether a sentence is a question or a hedge rather than a claim.
pub fn is_hedged_or_question(sentence: &str) -> bool {
    if sentence.trim_end().ends_with('?') {
        return true;
    }
    let lower = sentence.to_lowercase().replace('’', "'");
    HEDGES.iter().any(|h| {
        lower.match_indices(h).any(|(i, _)| {
            let before_ok = i == 0 || !lower[..i].ends_with(|c: char| c.is_alphanumeric());
            let after = &lower[i + h.len()..];
            let after_ok = !after.starts_with(|c: char| c.is_alphanumeric());
            before_ok && after_ok
        })
    })
}

/// The checkable sentences of a reply, at most `max`, in order: sentences that state at
/// least one quantity (a measurement, amount, percentage, count, date or time) and have at
/// least two content words to search with; questions and hedged sentences are skipped.
pub fn extract_claims(reply: &str, max: usize) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut subject: Vec<ContentWord> = Vec::new();
    for sentence in split_sentences(reply) {
        if out.len() >= max {
            break;
        }
        let parsed = parse(&sentence);
        let words = content_words(&parsed);
        let starts_with_pronoun = parsed
            .tokens
            .first()
            .is_some_and(|t| PRONOUNS.contains(&t.lower.as_str()));
        let has_names = words.iter().any(|w| w.name);
        // A sentence that names nothing ("It has 9 stations.", "The trip takes 34 minutes.")
        // is about the subject of the last sentence that did.
        let context = if starts_with_pronoun || !has_names {
            subject.clone()
        } else {
            Vec::new()
        };
        if has_names && !starts_with_pronoun {
            // This sentence's subject: its words before its first quantity, a capitalised
            // first word counted as a name.
            let first_value = parsed.quantities.first().map_or(usize::MAX, |q| q.anchor);
            subject = words
                .iter()
                .filter(|w| w.token < first_value)
                .map(|w| {
                    let mut w = w.clone();
                    w.name = w.name
                        || parsed.tokens[w.token]
                            .text
                            .chars()
                            .next()
                            .is_some_and(char::is_uppercase);
                    w
                })
                .collect();
        }
        if parsed.quantities.is_empty() || is_hedged_or_question(&sentence) {
            continue;
        }
        if words.len() + context.len() < 2 {
            continue;
        }
        out.push(Claim {
            text: sentence,
            parsed,
            words,
            context,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(reply: &str) -> Vec<String> {
        extract_claims(reply, 8)
            .into_iter()
            .map(|c| c.text)
            .collect()
    }

    #[test]
    fn sentences_with_quantities_are_claims_and_others_are_not() {
        let t = texts(
            "Sure! The Halden line is 38.6 km long. It is a lovely line. Tickets cost VDC 2.80 \
             in zone A. The line opened on 2 September 1897.",
        );
        assert_eq!(
            t,
            vec![
                "The Halden line is 38.6 km long.",
                "Tickets cost VDC 2.80 in zone A.",
                "The line opened on 2 September 1897.",
            ]
        );
    }

    #[test]
    fn questions_and_hedges_are_skipped() {
        let t = texts(
            "Is the line 38 km long? I think the line is 40 km long. It is probably 12 km. \
             I'm not sure, but it has 9 stations. The Coastal line has 13 stations.",
        );
        assert_eq!(t, vec!["The Coastal line has 13 stations."]);
    }

    #[test]
    fn list_items_are_separate_claims_and_max_claims_is_respected() {
        let reply =
            "Facts:\n- The Coastal line is 96.4 km long.\n- The Airport line opened in 2014.\n\
                     1. The Lakeside line has 8 stations.";
        assert_eq!(texts(reply).len(), 3);
        assert_eq!(extract_claims(reply, 2).len(), 2);
    }

    #[test]
    fn a_pronoun_borrows_the_names_of_the_previous_sentence() {
        let c = extract_claims("The Vesk Tunnel opened in 1911. It is 4.35 km long.", 8);
        assert_eq!(c.len(), 2);
        assert!(c[1].query().contains("vesk"), "{}", c[1].query());
        assert!(c[1].query().contains("long"));
        assert!(!c[1].query().contains("4.35"));
    }

    #[test]
    fn the_query_leaves_out_numbers_and_units_but_keeps_identifiers_and_nouns() {
        let c = extract_claims("Zone 2 tickets on Line 3 cost 4.50 VDC for 12 stations.", 8);
        assert_eq!(c.len(), 1);
        let q = c[0].query();
        assert!(
            q.contains("zone 2") && q.contains("line 3") && q.contains("stations"),
            "{q}"
        );
        assert!(!q.contains("4.50") && !q.contains("vdc"), "{q}");
    }
}
