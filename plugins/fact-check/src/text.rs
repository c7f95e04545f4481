//! Text handling shared by claims and evidence: Markdown clean-up, sentence splitting, a small
//! lexer and content words (lowercased, stop words removed, stemmed like the knowledge index).

use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// Words that end a sentence-like "." without ending the sentence (compared lowercased,
/// without the dot). Units are not listed: "5 min." at the end of a sentence ends it.
const ABBREVIATIONS: &[&str] = &[
    "approx", "ca", "cf", "dr", "e.g", "eg", "est", "etc", "fig", "i.e", "ie", "incl", "jr", "mr",
    "mrs", "ms", "mt", "no", "nos", "nr", "prof", "sr", "st", "vs", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "tues", "wed", "thu",
    "thur", "thurs", "fri", "sat", "sun", "ave", "rd", "dept", "co", "ltd", "inc",
];

/// Splits Markdown text into sentences. Every line is its own unit (list items, table rows,
/// headings); within a line, a sentence ends at `.`, `!` or `?` followed by a space and an
/// upper-case letter, a digit or an opening quote or bracket, unless the word before the dot
/// is a known abbreviation or a single capital (an initial). Decimal points never end a
/// sentence because no space follows them. Markdown tables are rendered row by row as
/// `label; header: cell; header: cell`, so each value stays next to its column name.
pub fn split_sentences(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut table_header: Option<Vec<String>> = None;
    let mut in_code_block = false;
    // Lines of one paragraph or list item, joined: Markdown wraps them freely.
    let mut block = String::new();
    let flush = |block: &mut String, out: &mut Vec<String>| {
        let line = clean_markdown_line(block);
        for s in split_line(&line) {
            let s = s.trim();
            if s.chars().any(char::is_alphanumeric) {
                out.push(s.to_string());
            }
        }
        block.clear();
    };
    for raw in markdown.lines() {
        let line = raw.trim();
        if line.starts_with("```") || line.starts_with("~~~") {
            flush(&mut block, &mut out);
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        if line.starts_with('|') {
            flush(&mut block, &mut out);
            let cells = table_cells(line);
            if cells.iter().all(|c| is_separator_cell(c)) {
                continue;
            }
            match &table_header {
                None => table_header = Some(cells),
                Some(header) => {
                    let row = render_table_row(header, &cells);
                    if !row.is_empty() {
                        out.push(row);
                    }
                }
            }
            continue;
        }
        table_header = None;
        if line.is_empty() {
            flush(&mut block, &mut out);
            continue;
        }
        let starts_block = line.starts_with('#') || starts_with_list_marker(line);
        if starts_block {
            flush(&mut block, &mut out);
        }
        if !block.is_empty() {
            block.push(' ');
        }
        block.push_str(line);
        if line.starts_with('#') {
            flush(&mut block, &mut out);
        }
    }
    flush(&mut block, &mut out);
    out
}

/// Whether a (trimmed) line starts a list item or a quote.
fn starts_with_list_marker(line: &str) -> bool {
    if ["- ", "* ", "+ ", "• ", "> "]
        .iter()
        .any(|m| line.starts_with(m))
    {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && digits <= 3
        && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

fn table_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| clean_inline(c.trim())).collect()
}

fn is_separator_cell(cell: &str) -> bool {
    !cell.is_empty() && cell.chars().all(|c| matches!(c, '-' | ':' | ' '))
}

fn render_table_row(header: &[String], cells: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if cell.is_empty() {
            continue;
        }
        let name = header.get(i).map(String::as_str).unwrap_or("");
        if i == 0 || name.is_empty() {
            parts.push(cell.clone());
        } else {
            parts.push(format!("{name}: {cell}"));
        }
    }
    parts.join("; ")
}

/// Removes a line's Markdown block markers (headings, list markers, quotes) and inline
/// markup (emphasis, code ticks, links).
pub fn clean_markdown_line(line: &str) -> String {
    let mut s = line.trim();
    loop {
        let before = s;
        s = s.trim_start_matches('#').trim_start();
        s = s.strip_prefix("> ").unwrap_or(s);
        for marker in ["- [ ] ", "- [x] ", "- ", "* ", "+ ", "• "] {
            if let Some(rest) = s.strip_prefix(marker) {
                s = rest.trim_start();
            }
        }
        // Ordered list markers: "1. " or "1) ".
        let digits = s.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && digits <= 3 {
            let rest = &s[digits..];
            if let Some(r) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
                s = r.trim_start();
            }
        }
        if s == before {
            break;
        }
    }
    clean_inline(s)
}

/// Inline Markdown: `**bold**`, `_em_`, `` `code` ``, `[text](url)` become plain text.
fn clean_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' | '`' => {}
            '_' if i + 1 < chars.len() && chars[i + 1] == '_' => {}
            '_' if (i == 0 || !chars[i - 1].is_alphanumeric())
                || (i + 1 == chars.len() || !chars[i + 1].is_alphanumeric()) => {}
            ']' if i + 1 < chars.len() && chars[i + 1] == '(' => {
                // Skip the link target.
                let mut j = i + 2;
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j;
            }
            '[' => {}
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Splits one cleaned line into sentences.
fn split_line(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if matches!(c, '.' | '!' | '?') {
            // Include closing quotes and brackets, and repeated marks.
            let mut j = i + 1;
            while j < chars.len()
                && matches!(chars[j].1, '.' | '!' | '?' | '"' | '\'' | ')' | '”' | '’')
            {
                j += 1;
            }
            let at_end = j >= chars.len();
            let next_starts = j < chars.len()
                && chars[j].1.is_whitespace()
                && chars[j..]
                    .iter()
                    .find(|(_, ch)| !ch.is_whitespace())
                    .is_some_and(|(_, ch)| {
                        ch.is_uppercase() || ch.is_ascii_digit() || "\"'“‘([€$£".contains(*ch)
                    });
            if (at_end || next_starts) && !(c == '.' && is_abbreviation(&line[start..pos])) {
                let end = if j < chars.len() {
                    chars[j].0
                } else {
                    line.len()
                };
                out.push(&line[start..end]);
                start = end;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    if start < line.len() {
        out.push(&line[start..]);
    }
    out
}

/// Whether the text before a dot ends with an abbreviation or an initial.
fn is_abbreviation(before: &str) -> bool {
    let word: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '.')
        .collect::<Vec<char>>()
        .into_iter()
        .rev()
        .collect();
    if word.is_empty() {
        return false;
    }
    let mut letters = word.chars();
    if let (Some(first), None) = (letters.next(), letters.next()) {
        // "J. Smith": a single capital is an initial; a single digit is not, and neither is
        // a letter that names something ("zone A.").
        let previous = before[..before.len() - word.len()]
            .split_whitespace()
            .last()
            .map(str::to_lowercase)
            .unwrap_or_default();
        let singular = crate::quantity::singular_of(&previous);
        let names_something = crate::quantity::NAMING_NOUNS.contains(&previous.as_str())
            || crate::quantity::NAMING_NOUNS.contains(&singular);
        return first.is_uppercase() && !names_something;
    }
    let lower = word.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokKind {
    /// A word (letters, maybe followed by digits: `km2`, `B4`); possessive `'s` removed.
    Word,
    /// A number as written.
    Number(NumLit),
    /// A clock time `H:MM`, in minutes after midnight.
    Time(u32),
    /// An ISO date `YYYY-MM-DD`.
    IsoDate(i32, u32, u32),
    /// Any other character.
    Sym(char),
}

/// A number literal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumLit {
    /// Its value.
    pub value: f64,
    /// Digits written after the decimal point.
    pub decimals: u32,
    /// Written with an ordinal suffix (`5th`).
    pub ordinal: bool,
    /// Written with thousands separators (`1,200`, `1 200`).
    pub grouped: bool,
    /// Digits before the decimal point (separators not counted).
    pub int_digits: u32,
}

/// One token of a sentence, with its byte span.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Kind and value.
    pub kind: TokKind,
    /// The text as written (for words: without a possessive `'s`).
    pub text: String,
    /// Lowercased text.
    pub lower: String,
    /// Byte offset of the first character in the sentence.
    pub start: usize,
    /// Byte offset just past the last character.
    pub end: usize,
}

impl Token {
    /// Whether this is a word token.
    pub fn is_word(&self) -> bool {
        self.kind == TokKind::Word
    }

    /// Whether this is the given symbol.
    pub fn is_sym(&self, c: char) -> bool {
        self.kind == TokKind::Sym(c)
    }

    /// The number literal, if this is a number.
    pub fn number(&self) -> Option<NumLit> {
        match &self.kind {
            TokKind::Number(n) => Some(*n),
            _ => None,
        }
    }
}

fn is_group_space(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
}

/// Splits a sentence into tokens.
pub fn tokenize(s: &str) -> Vec<Token> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let pos = |i: usize| chars.get(i).map(|&(p, _)| p).unwrap_or(s.len());
    let digit_run = |i: usize| {
        let mut j = i;
        while at(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
        j - i
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() {
            let head = digit_run(i);
            // ISO date.
            if head == 4
                && at(i + 4) == Some('-')
                && digit_run(i + 5) == 2
                && at(i + 7) == Some('-')
                && digit_run(i + 8) == 2
                && !at(i + 10).is_some_and(|c| c.is_ascii_digit())
            {
                let text = &s[pos(i)..pos(i + 10)];
                let y = text[0..4].parse().unwrap_or(0);
                let m = text[5..7].parse().unwrap_or(0);
                let d = text[8..10].parse().unwrap_or(0);
                if (1..=12).contains(&m) && (1..=31).contains(&d) {
                    push(&mut out, s, TokKind::IsoDate(y, m, d), pos(i), pos(i + 10));
                    i += 10;
                    continue;
                }
            }
            // Clock time.
            if head <= 2 && at(i + head) == Some(':') && digit_run(i + head + 1) == 2 {
                let h: u32 = s[pos(i)..pos(i + head)].parse().unwrap_or(99);
                let m: u32 = s[pos(i + head + 1)..pos(i + head + 3)]
                    .parse()
                    .unwrap_or(99);
                if h <= 24 && m < 60 {
                    let end = i + head + 3;
                    push(&mut out, s, TokKind::Time(h * 60 + m), pos(i), pos(end));
                    i = end;
                    continue;
                }
            }
            let mut int_digits: String = s[pos(i)..pos(i + head)].to_string();
            let mut j = i + head;
            // Thousands separators: "," or a (thin) space followed by exactly three digits,
            // after a head of one to three digits; one kind of separator per number.
            let mut separator: Option<bool> = None; // Some(true): comma, Some(false): space
            while head <= 3 && j < chars.len() {
                let Some(sep) = at(j) else { break };
                let comma = sep == ',';
                if !(comma || is_group_space(sep)) || separator.is_some_and(|s| s != comma) {
                    break;
                }
                if digit_run(j + 1) != 3 || at(j + 4).is_some_and(|c| c.is_ascii_digit()) {
                    break;
                }
                int_digits.push_str(&s[pos(j + 1)..pos(j + 4)]);
                separator = Some(comma);
                j += 4;
            }
            let grouped = separator.is_some();
            let int_digits: String = int_digits.chars().filter(char::is_ascii_digit).collect();
            let mut text_num = int_digits.clone();
            let mut decimals = 0;
            if at(j) == Some('.') && digit_run(j + 1) > 0 {
                let d = digit_run(j + 1);
                text_num.push('.');
                text_num.push_str(&s[pos(j + 1)..pos(j + 1 + d)]);
                decimals = d as u32;
                j += 1 + d;
            }
            let mut ordinal = false;
            if decimals == 0 {
                let suffix: String = (j..j + 2).filter_map(at).collect::<String>().to_lowercase();
                let after = at(j + 2);
                if matches!(suffix.as_str(), "st" | "nd" | "rd" | "th")
                    && !after.is_some_and(char::is_alphanumeric)
                {
                    ordinal = true;
                    j += 2;
                }
            }
            let value: f64 = text_num.parse().unwrap_or(0.0);
            let lit = NumLit {
                value,
                decimals,
                ordinal,
                grouped,
                int_digits: int_digits.len() as u32,
            };
            push(&mut out, s, TokKind::Number(lit), pos(start), pos(j));
            i = j;
            continue;
        }
        if c.is_alphabetic() {
            let mut j = i;
            while at(j).is_some_and(|c| c.is_alphanumeric())
                || (at(j) == Some('_') && at(j + 1).is_some_and(char::is_alphanumeric))
                || (matches!(at(j), Some('\'') | Some('’'))
                    && at(j + 1).is_some_and(char::is_alphabetic))
            {
                j += 1;
            }
            let mut end = j;
            let word = &s[pos(i)..pos(j)];
            let lower = word.to_lowercase();
            if lower.ends_with("'s") || lower.ends_with("’s") {
                // Possessive: keep the noun.
                end = j - 2;
            }
            push(&mut out, s, TokKind::Word, pos(i), pos(end));
            i = j;
            continue;
        }
        push(&mut out, s, TokKind::Sym(c), pos(i), pos(i + 1));
        i += 1;
    }
    out
}

fn push(out: &mut Vec<Token>, s: &str, kind: TokKind, start: usize, end: usize) {
    let text = s[start..end].to_string();
    let lower = text.to_lowercase();
    out.push(Token {
        kind,
        text,
        lower,
        start,
        end,
    });
}

/// English stop words: function words that say nothing about a subject or attribute.
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
    "are",
    "around",
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
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "either",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "him",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "out",
    "over",
    "own",
    "per",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "whose",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yes",
    "approximately",
    "roughly",
    "nearly",
    "almost",
    "around",
    "exactly",
    "least",
    "less",
    "many",
    "much",
    "within",
    "via",
    "whereas",
    "yet",
    "there's",
    "it's",
    "let",
    "let's",
    "here's",
    "that's",
    "i'm",
    "i've",
    "we're",
    "you're",
    "they're",
    "isn't",
    "aren't",
    "don't",
    "doesn't",
    "won't",
    "can't",
    "total",
    "overall",
    "currently",
    "today",
    "usually",
    "typically",
    "generally",
    "about",
    "like",
    "said",
    "say",
    "says",
    "one",
    "ones",
    "amount",
    "number",
    "value",
    "make",
    "makes",
    "made",
    "making",
    "get",
    "gets",
    "got",
    "getting",
];

/// Whether a lowercased word is a stop word.
pub fn is_stop_word(lower: &str) -> bool {
    STOP_WORDS.contains(&lower)
}

/// Words with the same meaning for matching purposes, mapped to one stem. Keys are stems.
const SYNONYMS: &[(&str, &str)] = &[
    ("length", "long"),
    ("lengthi", "long"),
    ("height", "tall"),
    ("high", "tall"),
    ("price", "cost"),
    ("priced", "cost"),
    ("charg", "cost"),
    ("pay", "cost"),
    ("speed", "fast"),
    ("weight", "weigh"),
    ("mass", "weigh"),
    ("width", "wide"),
    ("depth", "deep"),
    ("age", "old"),
    ("open", "open"),
    ("inaugur", "open"),
    ("launch", "open"),
    ("found", "found"),
    ("establish", "found"),
    ("employe", "staff"),
    ("employ", "staff"),
    ("worker", "staff"),
    ("duration", "take"),
    ("journey", "trip"),
    ("ride", "trip"),
    ("travel", "trip"),
    ("kid", "child"),
    ("children", "child"),
    ("minor", "child"),
    ("depart", "leav"),
    ("departur", "leav"),
    ("arriv", "arriv"),
    ("passeng", "rider"),
    ("travell", "rider"),
    ("traveller", "rider"),
    ("custom", "rider"),
];

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// The matching stem of a lowercased word: English Snowball stem (as the knowledge index
/// uses), then a small synonym table (`length` → `long`, `price` → `cost`, …).
pub fn stem(lower: &str) -> String {
    let s = stemmer().stem(lower).into_owned();
    match SYNONYMS.iter().find(|(k, _)| *k == s) {
        Some((_, v)) => (*v).to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_full_stops_but_not_at_decimals_abbreviations_or_initials() {
        let s = split_sentences(
            "The line is 3.5 km long. It opened in 2021! Was it late? Fares rose approx. 5 per \
             cent, e.g. for J. Smith. Trains run every 10 min. The end.",
        );
        assert_eq!(
            s,
            vec![
                "The line is 3.5 km long.",
                "It opened in 2021!",
                "Was it late?",
                "Fares rose approx. 5 per cent, e.g. for J. Smith.",
                "Trains run every 10 min.",
                "The end.",
            ]
        );
    }

    #[test]
    fn wrapped_paragraph_lines_are_joined() {
        let s = split_sentences("The state paid a subsidy of VDC 145\nmillion. It runs\nuntil 2031.\n\n- An item\n  that wraps.\n- Another.");
        assert_eq!(
            s,
            vec![
                "The state paid a subsidy of VDC 145 million.",
                "It runs until 2031.",
                "An item that wraps.",
                "Another.",
            ]
        );
    }

    #[test]
    fn list_items_headings_and_markup_become_separate_clean_sentences() {
        let s = split_sentences(
            "## Fares\n- **Day pass**: 6 VDC\n* Child fare: 3 VDC\n1. First step. Second step.\n\
             See [the map](https://example.org/map) for `Zone 2`.\n```\ncode 5 km\n```",
        );
        assert_eq!(
            s,
            vec![
                "Fares",
                "Day pass: 6 VDC",
                "Child fare: 3 VDC",
                "First step.",
                "Second step.",
                "See the map for Zone 2.",
            ]
        );
    }

    #[test]
    fn table_rows_keep_each_cell_next_to_its_column_name() {
        let s = split_sentences(
            "| Ticket | Adult | Child |\n|---|---:|---|\n| Day pass | 6 VDC | 3 VDC |\n| Single | 2 VDC | |",
        );
        assert_eq!(
            s,
            vec![
                "Day pass; Adult: 6 VDC; Child: 3 VDC",
                "Single; Adult: 2 VDC"
            ]
        );
    }

    #[test]
    fn the_lexer_reads_grouped_numbers_decimals_times_dates_and_ordinals() {
        let t = tokenize("1,200 and 1 200 and 3.5km at 05:30 on 2021-03-05, the 5th; 2019, 200");
        let nums: Vec<f64> = t
            .iter()
            .filter_map(|t| t.number())
            .map(|n| n.value)
            .collect();
        assert_eq!(nums, vec![1200.0, 1200.0, 3.5, 5.0, 2019.0, 200.0]);
        assert!(t.iter().any(|t| t.kind == TokKind::Time(330)));
        assert!(t.iter().any(|t| t.kind == TokKind::IsoDate(2021, 3, 5)));
        assert!(t.iter().any(|t| t.number().is_some_and(|n| n.ordinal)));
        assert!(t.iter().any(|t| t.lower == "km"));
        let t = tokenize("Northwind's trains");
        assert_eq!(t[0].text, "Northwind");
    }

    #[test]
    fn stems_merge_inflections_and_synonyms() {
        assert_eq!(stem("stations"), stem("station"));
        assert_eq!(stem("length"), stem("long"));
        assert_eq!(stem("prices"), stem("costs"));
        assert!(is_stop_word("the"));
        assert!(!is_stop_word("station"));
    }
}
