//! Splitting documents into passages: one per section (the text under a Markdown heading),
//! long sections split further on paragraph boundaries, each passage keeping the heading
//! path of its section for citation.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// One passage of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The heading path of its section (`Title > Section > Subsection`), empty before the
    /// first heading and in plain-text files.
    pub heading: String,
    /// The passage text, trimmed.
    pub text: String,
}

/// A heading found in a Markdown document.
struct Heading {
    level: usize,
    title: String,
    /// Byte range of the heading in the source.
    start: usize,
    end: usize,
}

fn level_number(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// The headings of a Markdown document, as CommonMark sees them (ATX and setext; a `#` line
/// inside a code block is not a heading).
fn headings(markdown: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut open: Option<Heading> = None;
    for (event, range) in Parser::new_ext(markdown, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                open = Some(Heading {
                    level: level_number(level),
                    title: String::new(),
                    start: range.start,
                    end: range.end,
                });
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = open.as_mut() {
                    h.title.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(h) = open.as_mut() {
                    h.title.push(' ');
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(mut h) = open.take() {
                    h.title = h.title.split_whitespace().collect::<Vec<_>>().join(" ");
                    out.push(h);
                }
            }
            _ => {}
        }
    }
    out
}

/// Splits a Markdown document into passages of at most about `max_chars` characters.
pub fn split_markdown(markdown: &str, max_chars: usize) -> Vec<Passage> {
    let heads = headings(markdown);
    let mut out = Vec::new();
    // The text before the first heading.
    let first = heads.first().map_or(markdown.len(), |h| h.start);
    push_section(&mut out, "", &markdown[..first], max_chars);
    let mut path: Vec<(usize, String)> = Vec::new();
    for (i, h) in heads.iter().enumerate() {
        while path.last().is_some_and(|(level, _)| *level >= h.level) {
            path.pop();
        }
        path.push((h.level, h.title.clone()));
        let body_end = heads.get(i + 1).map_or(markdown.len(), |next| next.start);
        let body = markdown.get(h.end..body_end).unwrap_or("");
        let heading: Vec<&str> = path.iter().map(|(_, t)| t.as_str()).collect();
        push_section(&mut out, &heading.join(" > "), body, max_chars);
    }
    out
}

/// Splits a plain-text document into passages (no headings).
pub fn split_text(text: &str, max_chars: usize) -> Vec<Passage> {
    let mut out = Vec::new();
    push_section(&mut out, "", text, max_chars);
    out
}

/// Adds the passages of one section: paragraphs joined while they fit in `max_chars`; a
/// paragraph longer than that is cut at sentence ends, then at spaces.
fn push_section(out: &mut Vec<Passage>, heading: &str, body: &str, max_chars: usize) {
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<Passage>| {
        let text = current.trim();
        if !text.is_empty() {
            out.push(Passage {
                heading: heading.to_string(),
                text: text.to_string(),
            });
        }
        current.clear();
    };
    for paragraph in paragraphs(body) {
        for piece in pieces(paragraph, max_chars) {
            let joined = current.chars().count() + 2 + piece.chars().count();
            if !current.is_empty() && joined > max_chars {
                flush(&mut current, out);
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(piece);
        }
    }
    flush(&mut current, out);
}

/// Paragraphs: runs of non-blank lines.
fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// A paragraph cut into pieces of at most `max_chars` characters: at sentence ends where
/// possible, else at the last space, else anywhere (on a character boundary).
fn pieces(paragraph: &str, max_chars: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = paragraph;
    while rest.chars().count() > max_chars {
        let limit = rest
            .char_indices()
            .nth(max_chars)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let cut = window
            .rfind(". ")
            .or_else(|| window.rfind("? "))
            .or_else(|| window.rfind("! "))
            .map(|i| i + 1)
            .filter(|&i| i > limit / 3)
            .or_else(|| window.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(limit);
        out.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.trim().is_empty() {
        out.push(rest.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keep_their_heading_path() {
        let md = "Intro line.\n\n# Guide\n\nTop text.\n\n## Fares\n\nAdults pay 4.\n\n### Child fares\n\nChildren pay 2.\n\n## Lines\n\nThree lines.\n";
        let p = split_markdown(md, 1200);
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.heading.as_str(), p.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("", "Intro line."),
                ("Guide", "Top text."),
                ("Guide > Fares", "Adults pay 4."),
                ("Guide > Fares > Child fares", "Children pay 2."),
                ("Guide > Lines", "Three lines."),
            ]
        );
    }

    #[test]
    fn a_hash_line_in_a_code_block_is_not_a_heading_and_setext_headings_are() {
        let md = "Title\n=====\n\n```sh\n# not a heading\n```\n\nSub\n---\n\nBody.\n";
        let p = split_markdown(md, 1200);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].heading, "Title");
        assert!(p[0].text.contains("# not a heading"));
        assert_eq!(p[1].heading, "Title > Sub");
        assert_eq!(p[1].text, "Body.");
    }

    #[test]
    fn long_sections_split_on_paragraphs_then_sentences_within_the_limit() {
        let para = "This sentence has some words in it. ".repeat(10);
        let md = format!("# H\n\n{para}\n\n{para}\n\n{}\n", "word ".repeat(200));
        let p = split_markdown(&md, 400);
        assert!(p.len() >= 4, "{p:?}");
        for passage in &p {
            assert_eq!(passage.heading, "H");
            assert!(
                passage.text.chars().count() <= 400,
                "{}",
                passage.text.len()
            );
        }
        // Nothing lost: every word of the input is in some passage.
        let words: usize = p.iter().map(|p| p.text.split_whitespace().count()).sum();
        assert_eq!(words, md.split_whitespace().count() - 2);
        // Sentence cuts end at a full stop.
        assert!(p[0].text.ends_with('.'));
    }

    #[test]
    fn plain_text_has_no_heading_and_empty_sections_make_no_passage() {
        let p = split_text("one\n\ntwo\n", 1200);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].heading, "");
        assert_eq!(p[0].text, "one\n\ntwo");
        assert!(split_markdown("# A\n\n## B\n", 1200).is_empty());
        assert_eq!(split_text("ééé ééé", 3).len(), 2);
    }
}
