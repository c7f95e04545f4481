//! Text helpers shared by the checks: tokens, numbers, stems, stop words, sentences.
//!
//! Everything here is deliberately small and English-only: the checks compare words of a
//! user message, a reply and injected passages, and only need the two sides to be reduced
//! the same way, not a linguistically exact analysis.

use std::sync::OnceLock;

use regex::Regex;

/// One token of a text: a word or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    /// The token as written.
    pub raw: &'a str,
    /// Lowercased word, or a number with thousands separators removed ("1,200" → "1200").
    pub norm: String,
    /// Whether it is a number.
    pub number: bool,
    /// Byte offset of the token in the text.
    pub start: usize,
}

fn token_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // Numbers with thousands separators first, then plain and decimal numbers, then words
        // (letters with inner apostrophes, so "don't" stays one word).
        Regex::new(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\p{L}+(?:['’]\p{L}+)*")
            .expect("the token pattern is valid")
    })
}

/// Normalises a number as written: no thousands separators, no trailing decimal zeros.
pub(crate) fn normalize_number(raw: &str) -> String {
    let mut n: String = raw.chars().filter(|c| *c != ',').collect();
    if n.contains('.') {
        while n.ends_with('0') {
            n.pop();
        }
        if n.ends_with('.') {
            n.pop();
        }
    }
    n
}

/// The words and numbers of `text`, in order.
pub(crate) fn tokens(text: &str) -> Vec<Token<'_>> {
    token_re()
        .find_iter(text)
        .map(|m| {
            let raw = m.as_str();
            let number = raw.starts_with(|c: char| c.is_ascii_digit());
            let norm = if number {
                normalize_number(raw)
            } else {
                raw.to_lowercase().replace('’', "'")
            };
            Token {
                raw,
                norm,
                number,
                start: m.start(),
            }
        })
        .collect()
}

/// The normalised tokens of `text`.
pub(crate) fn norms(text: &str) -> Vec<String> {
    tokens(text).into_iter().map(|t| t.norm).collect()
}

/// Reduces a lowercased word to a crude stem so that "trains", "training" and "trained" all
/// meet "train". Numbers are returned unchanged.
pub(crate) fn stem(word: &str) -> String {
    if word.starts_with(|c: char| c.is_ascii_digit()) {
        return word.to_string();
    }
    let word = word.strip_suffix("'s").unwrap_or(word);
    if let Some((_, base)) = IRREGULAR.iter().find(|(form, _)| *form == word) {
        return (*base).to_string();
    }
    let mut w = word.to_string();
    let len = w.chars().count();
    if len > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("sses")
        || (len > 4
            && ["ches", "shes", "xes", "zes"]
                .iter()
                .any(|s| w.ends_with(s)))
    {
        w.truncate(w.len() - 2);
    } else if len > 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|s| w.ends_with(s)) {
        w.pop();
    }
    let len = w.chars().count();
    if len > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
        undouble(&mut w);
    } else if len > 4 && w.ends_with("ied") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if len > 4 && w.ends_with("ed") && !w.ends_with("eed") {
        w.truncate(w.len() - 2);
        undouble(&mut w);
    }
    if w.chars().count() > 3 && w.ends_with('e') {
        w.pop();
    }
    if w.chars().count() > 3 && w.ends_with('y') {
        w.pop();
        w.push('i');
    }
    w
}

/// Plurals that the suffix rules would miss.
const IRREGULAR: &[(&str, &str)] = &[
    ("children", "child"),
    ("people", "person"),
    ("men", "man"),
    ("women", "woman"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("mice", "mouse"),
    ("geese", "goose"),
];

/// "runn" → "run", but "fall" and "pass" stay.
fn undouble(w: &mut String) {
    let mut rev = w.chars().rev();
    if let (Some(a), Some(b)) = (rev.next(), rev.next()) {
        if a == b && a.is_alphabetic() && !"aeiouylsz".contains(a) {
            w.pop();
        }
    }
}

/// Function words that say nothing about what a text is about.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "anybody",
    "anyone",
    "anything",
    "everybody",
    "everyone",
    "everything",
    "nothing",
    "somebody",
    "someone",
    "something",
    "are",
    "aren't",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "can't",
    "cannot",
    "could",
    "couldn't",
    "did",
    "didn't",
    "do",
    "does",
    "doesn't",
    "doing",
    "don't",
    "down",
    "during",
    "each",
    "either",
    "else",
    "etc",
    "even",
    "ever",
    "every",
    "few",
    "for",
    "from",
    "further",
    "get",
    "gets",
    "got",
    "had",
    "hadn't",
    "has",
    "hasn't",
    "have",
    "haven't",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "however",
    "i",
    "i'd",
    "i'll",
    "i'm",
    "i've",
    "if",
    "in",
    "into",
    "is",
    "isn't",
    "it",
    "it's",
    "its",
    "itself",
    "just",
    "let",
    "let's",
    "like",
    "many",
    "may",
    "me",
    "might",
    "more",
    "most",
    "much",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "oh",
    "ok",
    "okay",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "per",
    "please",
    "quite",
    "rather",
    "really",
    "same",
    "shall",
    "she",
    "should",
    "shouldn't",
    "so",
    "some",
    "such",
    "than",
    "that",
    "that's",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "there's",
    "these",
    "they",
    "they're",
    "thing",
    "things",
    "this",
    "those",
    "though",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "very",
    "via",
    "was",
    "wasn't",
    "we",
    "we're",
    "were",
    "weren't",
    "what",
    "what's",
    "whatever",
    "when",
    "where",
    "where's",
    "whether",
    "which",
    "while",
    "who",
    "who's",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "won't",
    "would",
    "wouldn't",
    "yes",
    "yet",
    "you",
    "you'd",
    "you'll",
    "you're",
    "you've",
    "your",
    "yours",
    "yourself",
];

/// Words that only frame a question ("could you tell me …", "do you know …").
const QUESTION_FRAME: &[&str] = &[
    "tell",
    "know",
    "explain",
    "help",
    "wonder",
    "wondering",
    "question",
    "answer",
    "say",
    "mean",
    "think",
    "need",
    "want",
    "like",
    "give",
    "show",
    "find",
    "kind",
    "sort",
    "idea",
    "ideas",
    "thought",
    "thoughts",
    "suggestion",
    "suggestions",
    "advice",
    "tips",
    "recommend",
    "recommendation",
    "recommendations",
];

/// Whether a lowercased word is a stop word.
pub(crate) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.contains(&word)
}

/// Whether a lowercased word only frames a question.
pub(crate) fn is_question_frame(word: &str) -> bool {
    QUESTION_FRAME.contains(&word)
}

/// Whether a normalised token carries content: a number, or a word of at least `min_len`
/// characters that is not a stop word.
pub(crate) fn is_content(token: &Token<'_>, min_len: usize) -> bool {
    token.number || (token.norm.chars().count() >= min_len && !is_stop_word(&token.norm))
}

/// The stems of the content words of `text`, in order of first appearance, without
/// repeats.
pub(crate) fn content_stems(text: &str, min_len: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tokens(text) {
        if is_content(&t, min_len) {
            let s = stem(&t.norm);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// The stems of every token of `text` (stop words included).
pub(crate) fn all_stems(text: &str) -> Vec<String> {
    tokens(text).into_iter().map(|t| stem(&t.norm)).collect()
}

/// Splits text into sentences: at `.`, `!`, `?` or `…` followed by white space (closing
/// quotes and brackets stay with their sentence), and at line breaks. Returned slices are
/// trimmed and never empty.
pub(crate) fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c == '\n' {
            push_trimmed(&mut out, &text[start..pos]);
            start = pos + c.len_utf8();
        } else if matches!(c, '.' | '!' | '?' | '…') {
            // Keep closing quotes and brackets with the sentence.
            let mut j = i + 1;
            while j < chars.len() && is_closer(chars[j].1) {
                j += 1;
            }
            let at_end = j == chars.len();
            if at_end || chars[j].1.is_whitespace() {
                let end = if at_end { text.len() } else { chars[j].0 };
                push_trimmed(&mut out, &text[start..end]);
                start = end;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    push_trimmed(&mut out, &text[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s);
    }
}

/// Closing quotes, brackets and Markdown emphasis that may follow the end of a sentence.
pub(crate) fn is_closer(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '”' | '’' | '»' | ')' | ']' | '}' | '*' | '_' | '`'
    )
}

/// Replaces the content of fenced code blocks (```` ``` ```` lines and what is between them)
/// by nothing, keeping the prose around them. An unclosed fence drops the rest.
pub(crate) fn strip_code_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in text.lines() {
        if is_fence(line) {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether a line opens or closes a fenced code block.
pub(crate) fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// A Markdown list marker at the start of a line ("- ", "* ", "1. ", "2) "), if any: returns
/// the rest of the line.
pub(crate) fn strip_list_marker(line: &str) -> Option<&str> {
    let t = line.trim_start();
    for m in ["- ", "* ", "+ ", "• "] {
        if let Some(rest) = t.strip_prefix(m) {
            return Some(rest);
        }
    }
    if matches!(t, "-" | "*" | "+" | "•") {
        return Some("");
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &t[digits..];
        for sep in [". ", ") "] {
            if let Some(r) = rest.strip_prefix(sep) {
                return Some(r);
            }
        }
        if rest == "." || rest == ")" {
            return Some("");
        }
    }
    None
}

/// Shortens `text` to at most `max` characters, ending with "…" when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// Whether the token sequence `needle` occurs contiguously in `hay`.
pub(crate) fn contains_seq(hay: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_lose_thousands_separators_and_keep_decimals() {
        assert_eq!(
            norms("1,200 and 1200.50 or 3.5, 7."),
            ["1200", "and", "1200.5", "or", "3.5", "7"]
        );
        assert_eq!(norms("512m"), ["512", "m"]);
        assert_eq!(norms("Don’t"), ["don't"]);
    }

    #[test]
    fn stems_meet_across_plural_and_verb_forms() {
        for (a, b) in [
            ("trains", "train"),
            ("training", "trained"),
            ("cities", "city"),
            ("leaves", "leaving"),
            ("running", "runs"),
            ("buses", "bus"),
            ("fares", "fare"),
            ("museum's", "museum"),
        ] {
            assert_eq!(stem(a), stem(b), "{a} / {b}");
        }
        assert_ne!(stem("pass"), stem("pa"));
        assert_eq!(stem("1200"), "1200");
    }

    #[test]
    fn sentences_split_at_terminal_punctuation_and_lines_but_not_inside_numbers() {
        assert_eq!(
            sentences("It costs 3.5 euros. Really?\nYes! He said \"go.\" Then left"),
            [
                "It costs 3.5 euros.",
                "Really?",
                "Yes!",
                "He said \"go.\"",
                "Then left"
            ]
        );
    }

    #[test]
    fn code_blocks_are_removed_and_list_markers_recognised() {
        assert_eq!(strip_code_blocks("a\n```\ncode\n```\nb"), "a\nb\n");
        assert_eq!(strip_list_marker("  - item"), Some("item"));
        assert_eq!(strip_list_marker("12. item"), Some("item"));
        assert_eq!(strip_list_marker("3."), Some(""));
        assert_eq!(strip_list_marker("3.5 m"), None);
        assert_eq!(strip_list_marker("plain"), None);
    }
}
