//! Checking one claim against retrieved passages: evidence sentences, alignment, verdict.

use std::collections::HashMap;

use murmur_plugin_api::SearchHit;

use crate::claims::{content_words, Claim, ContentWord};
use crate::quantity::{
    comparable, compare, parse, Comparison, Dimension, Parsed, Quantity, Tolerance,
};
use crate::text::{split_sentences, stem};

/// The thresholds of a verdict (see the crate docs for their meaning and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Hits scoring below this are ignored.
    pub min_score: f32,
    /// Weighted share of the claim's content words an evidence sentence must contain to
    /// contradict the claim.
    pub min_overlap: f64,
    /// Weighted share an evidence sentence must contain to support the claim.
    pub support_overlap: f64,
    /// Content words (identifiers not counted) an evidence sentence, with its heading, must
    /// share with the claim to contradict it.
    pub min_shared: usize,
    /// How close (0–1) the claim's words must stand to the evidence value, relative to how
    /// close they stand to the claim's value, for a contradiction.
    pub min_local: f64,
    /// A supporting value counts when its alignment is within this margin of the best
    /// aligned evidence value.
    pub margin: f64,
    /// Equality tolerances.
    pub tolerance: Tolerance,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_score: 0.0,
            min_overlap: 0.6,
            support_overlap: 0.35,
            min_shared: 2,
            min_local: 0.1,
            margin: 0.25,
            tolerance: Tolerance::default(),
        }
    }
}

/// One sentence (or `;`-separated clause) of a retrieved passage.
#[derive(Debug, Clone)]
pub struct EvidenceSentence {
    /// The clause text.
    pub text: String,
    /// `source > heading` of its passage.
    pub citation: String,
    /// The whole passage text (for a judge).
    pub passage: String,
    parsed: Parsed,
    /// Content words with positions.
    words: Vec<ContentWord>,
    /// Stems of the passage's heading path.
    heading: Vec<String>,
    /// The heading path as written.
    heading_path: String,
    /// Content words of the previous clause when this one starts with a pronoun.
    carried: Vec<String>,
    /// Names in the clause, the clause it continues and the last heading: capitalised words
    /// other than a first word, and identifiers.
    names: Vec<(String, Option<usize>)>,
}

/// Names of a parsed clause: capitalised content words after the first token, identifiers.
fn names_of(parsed: &Parsed, words: &[ContentWord]) -> Vec<(String, Option<usize>)> {
    words
        .iter()
        .filter(|w| {
            w.stem.contains(' ')
                || (w.token > 0
                    && parsed.tokens[w.token]
                        .text
                        .chars()
                        .next()
                        .is_some_and(char::is_uppercase))
        })
        .map(|w| (w.stem.clone(), Some(w.token)))
        .collect()
}

/// Names in a heading path: the identifiers of every segment ("Class 41 Skylark"), and the
/// capitalised words of the last segment; its first word only when the second is
/// capitalised too ("Queen Elsa Bridge") or when `known_names` has it ("Skylark
/// performance", but not "Child fares").
fn heading_names(heading: &str, known_names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = heading
        .split(" > ")
        .flat_map(|segment| parse(segment).identifier_names)
        .collect();
    let last = heading.rsplit(" > ").next().unwrap_or("");
    let words: Vec<&str> = last
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| w.chars().count() > 1)
        .collect();
    let capital = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
    for (i, w) in words.iter().enumerate() {
        let lower = w.to_lowercase();
        if !capital(w) || crate::text::is_stop_word(&lower) {
            continue;
        }
        let stemmed = stem(&lower);
        if i > 0 || words.get(1).is_some_and(|n| capital(n)) || known_names.contains(&stemmed) {
            out.push(stemmed);
        }
    }
    out
}

const PRONOUNS: &[&str] = &[
    "it", "its", "they", "their", "this", "these", "she", "he", "her", "his", "each", "both",
];

/// Splits hits into evidence clauses. Hits below `min_score` are left out.
pub fn evidence_sentences(hits: &[SearchHit], min_score: f32) -> Vec<EvidenceSentence> {
    let mut out = Vec::new();
    for hit in hits.iter().filter(|h| h.score >= min_score) {
        let citation = hit.citation();
        let mut heading: Vec<String> = hit
            .heading
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 1)
            .map(|w| w.to_lowercase())
            .filter(|w| !crate::text::is_stop_word(w))
            .map(|w| stem(&w))
            .collect();
        // Identifiers in headings ("Class 52 Heron").
        for segment in hit.heading.split(" > ") {
            heading.extend(parse(segment).identifier_names);
        }
        let mut previous: Vec<String> = Vec::new();
        let mut previous_names: Vec<(String, Option<usize>)> = Vec::new();
        for sentence in split_sentences(&hit.text) {
            for clause in sentence.split("; ") {
                let parsed = parse(clause);
                let words = content_words(&parsed);
                let pronoun = parsed
                    .tokens
                    .first()
                    .is_some_and(|t| PRONOUNS.contains(&t.lower.as_str()));
                let carried = if pronoun {
                    previous.clone()
                } else {
                    Vec::new()
                };
                previous = words.iter().map(|w| w.stem.clone()).collect();
                let own_names = names_of(&parsed, &words);
                // Carried names first: they are what the clause's pronoun stands for.
                let mut names: Vec<(String, Option<usize>)> = Vec::new();
                if pronoun {
                    names.extend(previous_names.iter().map(|(n, _)| (n.clone(), None)));
                }
                names.extend(own_names.iter().cloned());
                previous_names = own_names;
                out.push(EvidenceSentence {
                    text: clause.to_string(),
                    citation: citation.clone(),
                    passage: hit.text.clone(),
                    parsed,
                    words,
                    heading: heading.clone(),
                    heading_path: hit.heading.clone(),
                    carried,
                    names,
                });
            }
        }
    }
    // Heading names last: whether a heading's first word is a name is learnt from the text.
    let known: Vec<String> = out
        .iter()
        .flat_map(|s| {
            s.names
                .iter()
                .filter(|(_, p)| p.is_some())
                .map(|(n, _)| n.clone())
        })
        .collect();
    for s in &mut out {
        let extra = heading_names(&s.heading_path, &known);
        s.names.extend(extra.into_iter().map(|n| (n, None)));
    }
    out
}

/// Whether two stems match: equal, or one a prefix of the other of at least four letters
/// (`electrif`/`electrifi`, `rail`/`railway`), which absorbs stemmer differences between
/// word forms.
fn stems_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    short.len() >= 4 && !short.contains(' ') && long.starts_with(short)
}

/// Inverse document frequency of stems over the evidence clauses: words rare in the
/// retrieved text weigh more than words every clause has ("Northwind", "line").
struct Weights {
    df: HashMap<String, usize>,
    n: usize,
}

impl Weights {
    fn new(sentences: &[EvidenceSentence]) -> Self {
        let mut df: HashMap<String, usize> = HashMap::new();
        for s in sentences {
            let mut seen: Vec<&str> = s.words.iter().map(|w| w.stem.as_str()).collect();
            seen.sort_unstable();
            seen.dedup();
            for w in seen {
                *df.entry(w.to_string()).or_default() += 1;
            }
        }
        Weights {
            df,
            n: sentences.len(),
        }
    }

    fn of(&self, stem: &str) -> f64 {
        let df = self.df.get(stem).copied().unwrap_or(0);
        1.0 + ((self.n as f64 + 1.0) / (df as f64 + 1.0)).ln()
    }
}

/// What the rules concluded about one claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// An evidence value equals the claim's.
    Supported,
    /// A well-matching evidence sentence states a different value of the same kind.
    Contradicted(Finding),
    /// No evidence good enough either way.
    NotCovered,
}

/// The evidence behind a contradiction.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The claim's value as written in the reply.
    pub stated: String,
    /// The evidence value as written in the passage.
    pub expected: String,
    /// `source > heading` of the passage.
    pub source: String,
    /// The evidence sentence.
    pub evidence: String,
    /// The whole passage (for a judge).
    pub passage: String,
    /// Weighted share of the claim's words in the evidence sentence.
    pub overlap: f64,
}

struct Candidate<'a> {
    sentence: &'a EvidenceSentence,
    quantity: &'a Quantity,
    overlap: f64,
    shared: usize,
    local: f64,
    align: f64,
    comparison: Comparison,
    /// How many other values of the claim the clause confirms.
    corroborated: usize,
}

/// Checks one claim against the evidence clauses of its hits.
pub fn check_claim(claim: &Claim, evidence: &[EvidenceSentence], th: &Thresholds) -> Verdict {
    let weights = Weights::new(evidence);
    let mut contradiction: Option<(f64, Finding)> = None;
    let mut supported = false;
    for q in &claim.parsed.quantities {
        match check_quantity(claim, q, evidence, &weights, th) {
            Verdict::Supported => supported = true,
            Verdict::Contradicted(f) => {
                if contradiction.as_ref().is_none_or(|(o, _)| f.overlap > *o) {
                    contradiction = Some((f.overlap, f));
                }
            }
            Verdict::NotCovered => {}
        }
    }
    match contradiction {
        Some((_, f)) => Verdict::Contradicted(f),
        None if supported => Verdict::Supported,
        None => Verdict::NotCovered,
    }
}

/// Stems that only say which dimension a value has ("long", "weighs", "costs"): comparing
/// dimensions already checks them, and evidence often words them differently ("runs 38 km").
fn dimension_words(dim: &Dimension) -> &'static [&'static str] {
    match dim {
        Dimension::Length => &[
            "long", "tall", "wide", "deep", "far", "distanc", "away", "span", "measur",
        ],
        Dimension::Mass => &["weigh", "heavi"],
        Dimension::Duration => &["take", "long"],
        Dimension::Money(_) => &["cost"],
        Dimension::Speed => &["fast", "reach"],
        Dimension::Area => &["cover", "area", "larg"],
        Dimension::Power => &["power", "output"],
        _ => &[],
    }
}

/// The content word right before a token (within three tokens), for plain numbers.
fn word_before(words: &[ContentWord], token: usize) -> Option<&str> {
    words
        .iter()
        .rev()
        .find(|w| w.token < token && token - w.token <= 3 && !w.stem.contains(' '))
        .map(|w| w.stem.as_str())
}

fn check_quantity(
    claim: &Claim,
    q: &Quantity,
    evidence: &[EvidenceSentence],
    weights: &Weights,
    th: &Thresholds,
) -> Verdict {
    // The claim's words, without the quantity's own noun ("stations" in "12 stations"): the
    // noun is matched by comparing dimensions, the rest must match the subject.
    let q_tokens: Vec<usize> = claim
        .parsed
        .tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.start >= q.span.start && t.end <= q.span.end)
        .map(|(i, _)| i)
        .collect();
    let all_dimension_words: Vec<&str> = claim
        .parsed
        .quantities
        .iter()
        .flat_map(|q| dimension_words(&q.dim).iter().copied())
        .collect();
    let words: Vec<(&ContentWord, f64, Option<usize>)> = claim
        .words
        .iter()
        .enumerate()
        .filter(|(i, w)| {
            !q_tokens.contains(&w.token)
                && !all_dimension_words.contains(&w.stem.as_str())
                && !claim.words[..*i].iter().any(|x| x.stem == w.stem)
        })
        .map(|(_, w)| w)
        .map(|w| {
            // Words near the value say more about it than words in another clause.
            let proximity = 0.5 + 0.5 / (1.0 + w.token.abs_diff(q.anchor) as f64 / 3.0);
            (w, weights.of(&w.stem) * proximity, Some(w.token))
        })
        .chain(
            claim
                .context
                .iter()
                .map(|w| (w, weights.of(&w.stem) * 0.75, None)),
        )
        .collect();
    let total: f64 = words.iter().map(|(_, wt, _)| wt).sum();
    if total <= 0.0 {
        return Verdict::NotCovered;
    }
    let claim_ids: Vec<&str> = claim
        .parsed
        .identifier_names
        .iter()
        .map(String::as_str)
        .collect();
    let near = |a: usize, b: usize| 1.0 / (1.0 + a.abs_diff(b) as f64);
    // Words that name the value's own dimension ("long" for a length) do not count as
    // overlap, but next to both values they show the same attribute ("4.35 km long" rather
    // than "lies 310 m below").
    let own_dimension_words = dimension_words(&q.dim);
    let attribute: Vec<&ContentWord> = claim
        .words
        .iter()
        .filter(|w| own_dimension_words.contains(&w.stem.as_str()))
        .collect();
    let local_max: f64 = words
        .iter()
        .filter_map(|(_, wt, pos)| pos.map(|p| wt * near(p, q.anchor).powi(2)))
        .chain(attribute.iter().map(|w| near(w.token, q.anchor).powi(2)))
        .sum();
    let plain = matches!(&q.dim, Dimension::Count(n) if n.is_empty());
    let others: Vec<&Quantity> = claim
        .parsed
        .quantities
        .iter()
        .filter(|o| !std::ptr::eq(*o, q))
        .collect();
    // Names of the claim: capitalised words inside the sentence, identifiers, and a
    // capitalised first word that the evidence writes as a name too ("Eskdal station ...").
    let evidence_names: Vec<&str> = evidence
        .iter()
        .flat_map(|s| s.names.iter().map(|(n, _)| n.as_str()))
        .collect();
    let claim_names: Vec<&str> = words
        .iter()
        .filter(|(w, _, pos)| {
            let capital_first = *pos == Some(0)
                && claim.parsed.tokens[0]
                    .text
                    .chars()
                    .next()
                    .is_some_and(char::is_uppercase);
            w.name || (capital_first && evidence_names.contains(&w.stem.as_str()))
        })
        .map(|(w, _, _)| w.stem.as_str())
        .collect();
    let has_positioned_words = words.iter().any(|(_, _, pos)| pos.is_some());
    let claim_before = word_before(&claim.words, q.anchor);

    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    for s in evidence {
        let mut matched = 0.0;
        let mut shared = 0;
        for (w, wt, _) in &words {
            if s.words.iter().any(|e| stems_match(&w.stem, &e.stem))
                || s.heading.iter().any(|h| stems_match(&w.stem, h))
            {
                matched += wt;
                // Identifiers alone ("zone A", "zone B") do not say what is being measured.
                if !w.stem.contains(' ') {
                    shared += 1;
                }
            } else if s.carried.iter().any(|c| stems_match(&w.stem, c)) {
                matched += 0.5 * wt;
            }
        }
        let overlap = matched / total;
        if overlap < th.support_overlap {
            continue;
        }

        // Other values of the claim that this sentence confirms make it the likelier evidence.
        let corroborated = others
            .iter()
            .filter(|o| {
                s.parsed
                    .quantities
                    .iter()
                    .any(|e| compare(o, e, &th.tolerance) == Comparison::Consistent)
            })
            .count();
        for e in &s.parsed.quantities {
            if !comparable(q, e) {
                continue;
            }
            if plain && (claim_before.is_none() || word_before(&s.words, e.anchor) != claim_before)
            {
                continue;
            }
            if !identifiers_agree(&claim_ids, s, e)
                || names_conflict(&claim_names, &words, q.anchor, s, e.anchor)
            {
                continue;
            }
            // A value that another of the claim's values matches belongs to that one.
            if others
                .iter()
                .any(|o| compare(o, e, &th.tolerance) == Comparison::Consistent)
            {
                continue;
            }
            let mut local = 0.0;
            for (w, wt, pos) in &words {
                let Some(p) = pos else { continue };
                let best = s
                    .words
                    .iter()
                    .filter(|x| stems_match(&w.stem, &x.stem))
                    .map(|x| near(x.token, e.anchor))
                    .fold(0.0, f64::max);
                local += wt * near(*p, q.anchor) * best;
            }
            for w in &attribute {
                let best = s
                    .words
                    .iter()
                    .filter(|x| x.stem == w.stem)
                    .map(|x| near(x.token, e.anchor))
                    .fold(0.0, f64::max);
                local += near(w.token, q.anchor) * best;
            }
            let local = if local_max > 0.0 {
                (local / local_max).min(1.0)
            } else {
                0.0
            };
            candidates.push(Candidate {
                sentence: s,
                quantity: e,
                overlap,
                shared,
                local,
                align: overlap + 0.5 * local + 0.3 * corroborated as f64,
                comparison: compare(q, e, &th.tolerance),
                corroborated,
            });
        }
    }
    let Some(best) = candidates.iter().max_by(|a, b| a.align.total_cmp(&b.align)) else {
        return Verdict::NotCovered;
    };
    let consistent_nearby = candidates
        .iter()
        .any(|c| c.comparison == Comparison::Consistent && c.align >= best.align - th.margin);
    if consistent_nearby {
        return Verdict::Supported;
    }
    let contradicts = |c: &Candidate<'_>| {
        c.comparison == Comparison::Different
            && c.overlap >= th.min_overlap
            && c.shared >= th.min_shared
            // A clause that confirms other values of the claim matches its words because of
            // those values; the value at hand must then stand next to the claim's own words.
            && (c.local >= if c.corroborated > 0 { 0.3 } else { th.min_local }
                || !has_positioned_words)
    };
    if contradicts(best) {
        // Which value to quote: among the well-aligned contradicting ones, prefer the value
        // closest to the claim's (a wrong year is more likely 1898 for 1897 than for 1971).
        let quoted = candidates
            .iter()
            .filter(|c| contradicts(c) && c.align >= best.align - th.margin)
            .max_by(|a, b| {
                let score = |c: &Candidate<'_>| c.align + 0.2 * closeness(q, c.quantity);
                score(a).total_cmp(&score(b))
            })
            .unwrap_or(best);
        return Verdict::Contradicted(Finding {
            stated: q.text.clone(),
            expected: quoted.quantity.text.clone(),
            source: quoted.sentence.citation.clone(),
            evidence: quoted.sentence.text.clone(),
            passage: quoted.sentence.passage.clone(),
            overlap: quoted.overlap,
        });
    }
    Verdict::NotCovered
}

/// How close two comparable values are, from 0 (far apart) to 1 (equal).
fn closeness(a: &Quantity, b: &Quantity) -> f64 {
    let (x, y) = ((a.lo + a.hi) / 2.0, (b.lo + b.hi) / 2.0);
    let scale = match a.dim {
        Dimension::Date => 3650.0,
        Dimension::TimeOfDay => 720.0,
        Dimension::DayOfYear => 1231.0,
        _ => x.abs().max(y.abs()),
    };
    if scale <= 0.0 {
        return 1.0;
    }
    1.0 - ((x - y).abs() / scale).min(1.0)
}

/// Whether a claim and an evidence value seem to be about different things. The evidence
/// must name something the claim does not (a capitalised word or identifier before the
/// value, in the clause it continues or in its last heading), and the claim must have a
/// name the evidence lacks, or its first content word must be missing from the evidence, or
/// less than half (by weight) of its words before its value (its subject) may be found in
/// the evidence: "the lighthouse on Corran Island was built" against "the ferry MV Corran
/// Star was built".
fn names_conflict(
    claim_names: &[&str],
    words: &[(&ContentWord, f64, Option<usize>)],
    claim_anchor: usize,
    s: &EvidenceSentence,
    evidence_anchor: usize,
) -> bool {
    let evidence_has = |name: &str| {
        s.words.iter().any(|w| stems_match(name, &w.stem))
            || s.heading.iter().any(|h| stems_match(name, h))
            || s.carried.iter().any(|c| stems_match(name, c))
    };
    let in_text = |name: &str| {
        s.words.iter().any(|w| stems_match(name, &w.stem))
            || s.carried.iter().any(|c| stems_match(name, c))
    };
    let is_extra = |n: &str| !words.iter().any(|(c, _, _)| stems_match(&c.stem, n));
    let names_before: Vec<&str> = s
        .names
        .iter()
        .filter(|(_, pos)| pos.is_some_and(|p| p < evidence_anchor))
        .map(|(n, _)| n.as_str())
        .collect();
    let extra_names = names_before.iter().any(|n| is_extra(n))
        || s.names.iter().any(|(n, pos)| pos.is_none() && is_extra(n));
    if !extra_names {
        return false;
    }
    // A clause whose first name is its own subject ("The Vesk Tunnel ... is 4.35 km long")
    // must name the claim's subject too; its heading ("Highland line > Vesk Tunnel") is not
    // enough.
    let own_subject = names_before.first().is_some_and(|n| is_extra(n));
    if claim_names
        .iter()
        .any(|n| !evidence_has(n) || (own_subject && !in_text(n)))
    {
        return true;
    }
    // A claim that only borrows its subject ("It has 11 stations.") needs a clause whose
    // first name is that subject (carried names come first).
    if !words.iter().any(|(_, _, pos)| pos.is_some()) {
        let first = s
            .names
            .iter()
            .find(|(_, pos)| pos.is_none_or(|p| p < evidence_anchor))
            .map(|(n, _)| n.as_str());
        if first.is_some_and(is_extra) {
            return true;
        }
    }
    // The claim's first content word usually belongs to its subject.
    if words
        .iter()
        .filter(|(_, _, pos)| pos.is_some())
        .min_by_key(|(_, _, pos)| *pos)
        .is_some_and(|(w, _, _)| !evidence_has(&w.stem))
    {
        return true;
    }
    let subject: Vec<&(&ContentWord, f64, Option<usize>)> = words
        .iter()
        .filter(|(_, _, pos)| pos.is_some_and(|p| p < claim_anchor))
        .collect();
    let total: f64 = subject.iter().map(|(_, wt, _)| wt).sum();
    let found: f64 = subject
        .iter()
        .filter(|(w, _, _)| evidence_has(&w.stem))
        .map(|(_, wt, _)| wt)
        .sum();
    total > 0.0 && found < 0.5 * total
}

/// Whether a value can belong to the claim's subject, judged by the identifiers of the
/// kinds the claim names (`Class 63`, `zone A`) on the value's side of the clause. When
/// identifiers come before the clause's first value ("a Class 41 unit has 2 spaces, a
/// Class 52 unit 3"), each value's are those since the previous value; otherwise ("VDC 8.10
/// from zone A into zone B and VDC 13.00 from zone A into zone C") those up to the next.
/// The value belongs to the claim when all of them are the claim's, or when there are none.
fn identifiers_agree(claim_ids: &[&str], s: &EvidenceSentence, e: &Quantity) -> bool {
    if claim_ids.is_empty() {
        return true;
    }
    let kinds: Vec<&str> = claim_ids
        .iter()
        .filter_map(|id| id.split_once(' ').map(|(noun, _)| noun))
        .collect();
    let ids: Vec<(usize, &str)> = s
        .parsed
        .identifiers
        .iter()
        .zip(&s.parsed.identifier_names)
        .filter(|(_, name)| {
            name.split_once(' ')
                .is_some_and(|(noun, _)| kinds.contains(&noun))
        })
        .map(|(tok, name)| (*tok, name.as_str()))
        .collect();
    let anchors: Vec<usize> = s.parsed.quantities.iter().map(|q| q.anchor).collect();
    let first_value = anchors.iter().copied().min().unwrap_or(usize::MAX);
    let ids_lead = ids.iter().any(|(tok, _)| *tok < first_value);
    let (from, to) = if ids_lead {
        (
            anchors.iter().copied().filter(|&a| a < e.anchor).max(),
            Some(e.anchor),
        )
    } else {
        (
            Some(e.anchor),
            anchors.iter().copied().filter(|&a| a > e.anchor).min(),
        )
    };
    ids.iter()
        .filter(|(tok, _)| from.is_none_or(|f| *tok > f) && to.is_none_or(|t| *tok < t))
        .all(|(_, name)| claim_ids.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::extract_claims;

    fn hit(source: &str, heading: &str, text: &str) -> SearchHit {
        SearchHit {
            id: format!("{source}#0"),
            source: source.to_string(),
            heading: heading.to_string(),
            text: text.to_string(),
            score: 1.0,
            similarity: None,
        }
    }

    fn verdict(reply: &str, hits: &[SearchHit]) -> Verdict {
        let claims = extract_claims(reply, 8);
        assert_eq!(claims.len(), 1, "{reply}");
        let ev = evidence_sentences(hits, 0.0);
        check_claim(&claims[0], &ev, &Thresholds::default())
    }

    fn lines() -> Vec<SearchHit> {
        vec![
            hit(
                "lines.md",
                "Lines > Halden line (L1)",
                "The Halden line is the oldest line, opened in 1897. It runs 38.6 km from Port \
                 Avalon Central to Halden with 9 stations, and the trip takes 34 minutes.",
            ),
            hit(
                "stock.md",
                "Rolling stock > Wheelchair spaces",
                "A Class 41 Skylark unit has 2 wheelchair spaces, a Class 52 Heron unit 3 and a \
                 Class 63 Kestrel unit 4.",
            ),
            hit(
                "fares.md",
                "Fares > Delay compensation",
                "If a train arrives 30 to 59 minutes late, passengers can claim back 25% of the \
                 fare; from 60 minutes the refund is 50%.",
            ),
        ]
    }

    #[test]
    fn an_equal_value_in_other_units_supports_the_claim() {
        assert_eq!(
            verdict("The Halden line is 38,600 m long.", &lines()),
            Verdict::Supported
        );
        assert_eq!(
            verdict("The Halden line opened in 1897.", &lines()),
            Verdict::Supported
        );
    }

    #[test]
    fn a_different_value_of_the_same_attribute_contradicts_the_claim() {
        let Verdict::Contradicted(f) = verdict("The Halden line is 48.6 km long.", &lines()) else {
            panic!("expected a contradiction");
        };
        assert_eq!(f.stated, "48.6 km");
        assert_eq!(f.expected, "38.6 km");
        assert_eq!(f.source, "lines.md > Lines > Halden line (L1)");
        let v = verdict("A Class 63 Kestrel unit has 2 wheelchair spaces.", &lines());
        assert!(
            matches!(v, Verdict::Contradicted(ref f) if f.expected == "4"),
            "{v:?}"
        );
        let v = verdict(
            "If a train is 30 to 59 minutes late you can claim back 50% of the fare.",
            &lines(),
        );
        assert!(
            matches!(v, Verdict::Contradicted(ref f) if f.expected == "25%"),
            "{v:?}"
        );
    }

    #[test]
    fn a_number_of_another_attribute_of_the_same_subject_is_no_contradiction() {
        // 9 stations and 34 minutes are about the Halden line too, but not about its length.
        assert_eq!(
            verdict("The Halden line has 9 stations.", &lines()),
            Verdict::Supported
        );
        assert_eq!(
            verdict("The Halden line has 12 platforms.", &lines()),
            Verdict::NotCovered
        );
        assert_eq!(
            verdict("The Halden line has a top speed of 120 km/h.", &lines()),
            Verdict::NotCovered
        );
        // Same subject, same dimension, another attribute: 34 minutes is the trip time.
        assert_eq!(
            verdict("Halden line trains run every 15 minutes.", &lines()),
            Verdict::NotCovered
        );
    }

    #[test]
    fn a_clause_about_another_named_thing_is_no_evidence() {
        let hits = [
            hit(
                "ferry.md",
                "Corran Island Ferry > MV Corran Star",
                "The ferry MV Corran Star was built in 2005 and entered service on 2 May 2006.",
            ),
            hit(
                "lines.md",
                "Lines > Highland line (L3) > Vesk Tunnel",
                "The Vesk Tunnel between Vesk and Ulm Crossing is 4.35 km long.",
            ),
        ];
        assert_eq!(
            verdict("The lighthouse on Corran Island was built in 1871.", &hits),
            Verdict::NotCovered
        );
        assert_eq!(
            verdict("The Highland line is 112.8 km long.", &hits),
            Verdict::NotCovered
        );
        assert!(matches!(
            verdict("The Vesk Tunnel is 43.5 km long.", &hits),
            Verdict::Contradicted(_)
        ));
    }

    #[test]
    fn values_are_tied_to_the_identifiers_next_to_them() {
        let hits = [hit(
            "fares.md",
            "Fares > Day return tickets",
            "A day return costs VDC 8.10 from zone A into zone B and VDC 13.00 from zone A into \
             zone C.",
        )];
        let v = verdict(
            "A day return from zone A into zone B costs VDC 9.00.",
            &hits,
        );
        assert!(
            matches!(v, Verdict::Contradicted(ref f) if f.expected == "VDC 8.10"),
            "{v:?}"
        );
        assert_eq!(
            verdict(
                "A day return from zone A into zone C costs VDC 13.00.",
                &hits
            ),
            Verdict::Supported
        );
    }

    #[test]
    fn a_value_another_claim_value_explains_is_not_used_against_it() {
        let hits = [hit(
            "fares.md",
            "Fares > Penalty fares",
            "A passenger without a valid ticket pays a penalty fare of VDC 60. The penalty \
                 is reduced to VDC 35 if it is paid within 14 days.",
        )];
        assert_eq!(
            verdict(
                "The penalty fare is VDC 60, reduced to VDC 35 if you pay within 14 days.",
                &hits
            ),
            Verdict::Supported
        );
        assert!(matches!(
            verdict("The penalty fare is reduced to VDC 35 if it is paid within 30 days.", &hits),
            Verdict::Contradicted(ref f) if f.expected == "14 days"
        ));
    }

    #[test]
    fn plain_numbers_compare_only_after_the_same_word() {
        let hits = [hit(
            "murmur.md",
            "Murmur handbook > Limits > Maximum steps per turn",
            "`max_steps` caps the number of model calls in one turn and defaults to 15. \
             Older versions used 12.",
        )];
        assert!(matches!(
            verdict("Murmur's max_steps setting defaults to 10.", &hits),
            Verdict::Contradicted(ref f) if f.expected == "15"
        ));
        assert_eq!(
            verdict("Murmur's max_steps setting defaults to 15.", &hits),
            Verdict::Supported
        );
    }

    #[test]
    fn a_sentence_without_a_subject_borrows_the_previous_one() {
        let hits = lines();
        let claims = extract_claims("The Halden line opened in 1897. It has 11 stations.", 8);
        assert_eq!(claims.len(), 2);
        let ev = evidence_sentences(&hits, 0.0);
        let v = check_claim(&claims[1], &ev, &Thresholds::default());
        assert!(
            matches!(v, Verdict::Contradicted(ref f) if f.expected == "9 stations"),
            "{v:?}"
        );
    }

    #[test]
    fn claims_about_other_subjects_are_not_covered() {
        assert_eq!(
            verdict("The Eiffel Tower is 330 m tall.", &lines()),
            Verdict::NotCovered
        );
        assert_eq!(
            verdict("The Channel Tunnel line is 50.5 km long.", &lines()),
            Verdict::NotCovered
        );
        assert_eq!(verdict("Anything is 5 km long.", &[]), Verdict::NotCovered);
    }
}
