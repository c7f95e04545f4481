//! Reading fact-check corrections (the contract in `notes/correction-format.md`).
//!
//! A fact-check injection is one context-lane message whose lines after the heading read
//!
//! ```text
//! - It said 512 m for "The Eiffel Tower is 512 m tall."; the knowledge base says 330 m (landmarks.md > Paris > Eiffel Tower).
//! ```
//!
//! one line per contradicted claim. [`parse_corrections`] returns every such line of a
//! message and ignores everything else.

use std::sync::OnceLock;

use regex::Regex;

/// One contradicted claim, as a fact-check injection states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// The claim of the reply, quoted ("The Eiffel Tower is 512 m tall.").
    pub claim: String,
    /// The value the reply stated, as written in the reply ("512 m").
    pub stated: String,
    /// The value the knowledge base gives, as written in the passage ("330 m").
    pub expected: String,
    /// Where the knowledge base says so ("landmarks.md > Paris > Eiffel Tower").
    pub source: String,
}

fn line_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"^- It said (?P<stated>.+?) for "(?P<claim>.+?)"; the knowledge base says (?P<expected>.+?) \((?P<source>[^()]+)\)\.$"#,
        )
        .expect("the correction pattern is valid")
    })
}

/// Parses one correction line; `None` when the line does not follow the format exactly.
pub fn parse_correction_line(line: &str) -> Option<Correction> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let caps = line_re().captures(line)?;
    let field = |name: &str| caps.name(name).map(|m| m.as_str().to_string());
    Some(Correction {
        claim: field("claim")?,
        stated: field("stated")?,
        expected: field("expected")?,
        source: field("source")?,
    })
}

/// Every correction line of a fact-check message, in order.
pub fn parse_corrections(content: &str) -> Vec<Correction> {
    content.lines().filter_map(parse_correction_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "Fact-check of the previous reply (from the knowledge base):\n\
        - It said 512 m for \"The Eiffel Tower is 512 m tall.\"; the knowledge base says 330 m (landmarks.md > Paris > Eiffel Tower).\n\
        - It said 1,200 for \"It has 1,200 steps.\"; the knowledge base says 1,665 (landmarks.md > Paris > Eiffel Tower > Stairs).\n";

    #[test]
    fn the_documented_example_parses_into_its_four_fields() {
        let all = parse_corrections(MESSAGE);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            Correction {
                claim: "The Eiffel Tower is 512 m tall.".into(),
                stated: "512 m".into(),
                expected: "330 m".into(),
                source: "landmarks.md > Paris > Eiffel Tower".into(),
            }
        );
        assert_eq!(all[1].stated, "1,200");
        assert_eq!(all[1].expected, "1,665");
        assert_eq!(
            all[1].source,
            "landmarks.md > Paris > Eiffel Tower > Stairs"
        );
    }

    #[test]
    fn lines_that_bend_the_format_are_ignored() {
        for line in [
            // No final period.
            "- It said 512 m for \"X is 512 m.\"; the knowledge base says 330 m (a.md)",
            // Indented.
            "  - It said 512 m for \"X is 512 m.\"; the knowledge base says 330 m (a.md).",
            // Claim not quoted.
            "- It said 512 m for X is 512 m; the knowledge base says 330 m (a.md).",
            // Parentheses inside the source.
            "- It said 512 m for \"X.\"; the knowledge base says 330 m (a (b).md).",
            // The heading line.
            "Fact-check of the previous reply (from the knowledge base):",
            "",
        ] {
            assert_eq!(parse_correction_line(line), None, "{line}");
        }
    }

    #[test]
    fn windows_line_ends_and_quotes_inside_the_claim_are_accepted() {
        let c = parse_correction_line(
            "- It said 1889 for \"The tower, called \"La dame de fer\", opened in 1889.\"; the knowledge base says 1887 (towers.md > Paris).\r",
        )
        .expect("a valid line");
        assert_eq!(c.stated, "1889");
        assert_eq!(
            c.claim,
            "The tower, called \"La dame de fer\", opened in 1889."
        );
        assert_eq!(c.expected, "1887");
    }
}
