//! The heuristic checks: plain functions over a [`Review`], callable without a host.

use std::collections::{BTreeSet, HashSet};

use murmur_plugin_api::{Message, Origin, Role};

use crate::correction::{parse_corrections, Correction};
use crate::settings::ReviewConfig;
use crate::text::{
    all_stems, contains_seq, content_stems, is_closer, is_fence, is_question_frame, norms,
    sentences, shorten, stem, strip_code_blocks, strip_list_marker, tokens,
};

/// What a finding is about; its [`Label::as_str`] is the label in `details.labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// The reply is empty, white space, or nothing but filler.
    Empty,
    /// The reply stops mid-sentence.
    Truncated,
    /// The reply repeats a sentence or a long run of words.
    Repeated,
    /// A question of the user is not addressed.
    UnansweredQuestion,
    /// Retrieved passages on the question were in context, and the reply used none of
    /// their key facts.
    IgnoredContext,
    /// The reply states again a value a fact-check correction rejected.
    RepeatsCorrection,
    /// The judge model said the reply needs improvement.
    Judge,
}

impl Label {
    /// The heuristic checks, each of which config `checks` may enable.
    pub const CHECKS: [Label; 6] = [
        Label::Empty,
        Label::Truncated,
        Label::Repeated,
        Label::UnansweredQuestion,
        Label::IgnoredContext,
        Label::RepeatsCorrection,
    ];

    /// The label as it appears in `details.labels` and in config `checks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Empty => "empty",
            Label::Truncated => "truncated",
            Label::Repeated => "repeated",
            Label::UnansweredQuestion => "unanswered_question",
            Label::IgnoredContext => "ignored_context",
            Label::RepeatsCorrection => "repeats_correction",
            Label::Judge => "judge",
        }
    }

    /// Reads the name of a heuristic check (not `judge`, which has its own keys).
    pub fn parse_check(name: &str) -> Option<Label> {
        Label::CHECKS.into_iter().find(|l| l.as_str() == name)
    }
}

/// One problem found in a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of problem.
    pub label: Label,
    /// What exactly, for the event log (`details.findings[].detail`).
    pub detail: String,
    /// One line of coaching for the next reply, without the bullet.
    pub advice: String,
}

impl Finding {
    fn new(label: Label, detail: impl Into<String>, advice: impl Into<String>) -> Self {
        Finding {
            label,
            detail: detail.into(),
            advice: advice.into(),
        }
    }
}

/// Where an injected message sits relative to the latest user message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// After the latest user message: it was in the model context for this reply.
    AfterUser,
    /// Between the previous user message and the latest one: injected during the turn
    /// before (or before the first user message).
    TurnBefore,
    /// Older.
    Earlier,
}

/// One analyzer injection in the model context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected<'a> {
    /// The analyzer instance that injected it ("rag", "fact-check").
    pub analyzer: &'a str,
    /// Its text.
    pub content: &'a str,
    /// Where it sits.
    pub position: Position,
}

/// Everything the checks look at: one exchange and the injections around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review<'a> {
    /// The latest user message ("" when there is none).
    pub user: &'a str,
    /// The reply under review.
    pub reply: &'a str,
    /// Context-lane injections in the model context, oldest first.
    pub injected: Vec<Injected<'a>>,
}

impl<'a> Review<'a> {
    /// A review of `reply` to `user` with nothing injected.
    pub fn new(user: &'a str, reply: &'a str) -> Self {
        Review {
            user,
            reply,
            injected: Vec::new(),
        }
    }

    /// Adds an injection.
    pub fn with_injected(
        mut self,
        analyzer: &'a str,
        content: &'a str,
        position: Position,
    ) -> Self {
        self.injected.push(Injected {
            analyzer,
            content,
            position,
        });
        self
    }

    /// Builds a review from the host's model messages: every context-lane injection
    /// (origin [`Origin::Injection`], role not `system`), placed relative to the last two
    /// messages typed by the user.
    pub fn from_messages(
        user: &'a str,
        reply: &'a str,
        messages: impl IntoIterator<Item = Message<'a>>,
    ) -> Self {
        let messages: Vec<Message<'a>> = messages.into_iter().collect();
        let users: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.origin == Origin::User && m.role == Role::User)
            .map(|(i, _)| i)
            .collect();
        let last = users.last().copied();
        let previous = users
            .len()
            .checked_sub(2)
            .and_then(|i| users.get(i))
            .copied();
        let injected = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.origin == Origin::Injection && m.role != Role::System)
            .map(|(i, m)| {
                let position = match (last, previous) {
                    (Some(l), _) if i > l => Position::AfterUser,
                    (None, _) => Position::AfterUser,
                    (Some(_), Some(p)) if i < p => Position::Earlier,
                    _ => Position::TurnBefore,
                };
                Injected {
                    analyzer: m.name,
                    content: m.content,
                    position,
                }
            })
            .collect();
        Review {
            user,
            reply,
            injected,
        }
    }
}

/// Runs the checks `config` enables, in label order. An empty reply yields only the
/// `empty` finding (when enabled): the other checks have nothing to look at.
pub fn run_checks(review: &Review<'_>, config: &ReviewConfig) -> Vec<Finding> {
    let on = |l: Label| config.checks.contains(&l);
    if let Some(f) = check_empty(review.reply) {
        return if on(Label::Empty) { vec![f] } else { vec![] };
    }
    let mut out = Vec::new();
    if on(Label::Truncated) {
        out.extend(check_truncated(review.reply));
    }
    if on(Label::Repeated) {
        out.extend(check_repeated(review.reply));
    }
    if on(Label::UnansweredQuestion) {
        out.extend(check_unanswered(
            review.user,
            review.reply,
            config.min_word_len,
        ));
    }
    if on(Label::IgnoredContext) {
        out.extend(check_ignored_context(
            review,
            &config.retrieval_from,
            config.min_word_len,
        ));
    }
    if on(Label::RepeatsCorrection) {
        out.extend(check_repeats_correction(
            review,
            &config.corrections_from,
            config.min_word_len,
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------
// empty

/// Phrases that acknowledge or stall without saying anything.
const FILLER: &[&str] = &[
    "sure",
    "sure thing",
    "okay",
    "ok",
    "certainly",
    "of course",
    "hmm",
    "hm",
    "um",
    "umm",
    "uh",
    "er",
    "well",
    "alright",
    "all right",
    "absolutely",
    "great question",
    "good question",
    "interesting question",
    "that's a great question",
    "that is a great question",
    "what a great question",
    "let me check",
    "let me see",
    "let me think",
    "let me think about it",
    "let me think about that",
    "let me look",
    "let me look into it",
    "let me look into that",
    "let me find out",
    "one moment",
    "just a moment",
    "one sec",
    "one second",
    "hold on",
    "i see",
    "got it",
    "i understand",
    "understood",
    "noted",
    "thanks",
    "thank you",
    "thanks for asking",
    "thank you for asking",
    "thanks for your question",
    "thank you for your question",
    "happy to help",
    "glad to help",
    "i'd be happy to help",
    "i would be happy to help",
    "i can help with that",
    "i can help",
    "here is the answer",
    "here's the answer",
    "here is",
    "here's",
    "here you go",
    "the answer is",
    "so",
    "right",
    "oh",
    "ah",
    "hi",
    "hello",
    "hey",
    "there",
    "good",
    "great",
    "nice",
    "cool",
    "no problem",
    "you're welcome",
    "i'll check",
    "i will check",
    "i'll look into it",
    "let me get back to you",
    "i'll get back to you",
    "working on it",
    "thinking",
];

/// `empty`: nothing but white space, punctuation, symbols, or filler phrases.
pub fn check_empty(reply: &str) -> Option<Finding> {
    let words = norms(reply);
    let phrases: Vec<Vec<String>> = FILLER.iter().map(|p| norms(p)).collect();
    let mut i = 0;
    while i < words.len() {
        let longest = phrases
            .iter()
            .filter(|p| words[i..].starts_with(p))
            .map(Vec::len)
            .max()?;
        i += longest;
    }
    let detail = if reply.trim().is_empty() {
        "the reply is empty".to_string()
    } else {
        format!("the reply is only filler: \"{}\"", shorten(reply, 60))
    };
    Some(Finding::new(
        Label::Empty,
        detail,
        "Your last reply said nothing of substance; give a real answer.",
    ))
}

// ---------------------------------------------------------------------------------------
// truncated

/// Words after which a sentence cannot end.
const DANGLING: &[&str] = &[
    "and",
    "or",
    "but",
    "nor",
    "yet",
    "because",
    "although",
    "though",
    "whereas",
    "if",
    "unless",
    "until",
    "than",
    "as",
    "that",
    "which",
    "whose",
    "the",
    "a",
    "an",
    "of",
    "to",
    "at",
    "by",
    "for",
    "with",
    "from",
    "into",
    "onto",
    "about",
    "between",
    "through",
    "during",
    "without",
    "within",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "will",
    "would",
    "can",
    "could",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "has",
    "have",
    "had",
    "my",
    "your",
    "its",
    "our",
    "their",
    "these",
    "those",
    "very",
    "also",
    "such",
    "including",
    "per",
    "via",
    "plus",
    "whether",
    "both",
    "either",
    "neither",
];

/// Emoticons that end a reply on purpose even though they end with a bracket or colon.
const EMOTICONS: &[&str] = &[
    ":(", ":)", ":-(", ":-)", ";)", ";-)", ":D", ":P", ":/", ":-/", "<3", "^^",
];

const TERMINAL: &[char] = &['.', '!', '?', '…', '。', '！', '？'];

/// `truncated`: the reply stops mid-sentence. Looks, in order, for an unclosed code fence,
/// an unclosed bracket, an empty last list item, a last word or mark after which nothing
/// can end, and a missing final punctuation mark in a reply that punctuates elsewhere (a
/// single short unpunctuated phrase such as "Paris", a closing bracket or quote, an emoji
/// or a trailing link count as a deliberate end).
pub fn check_truncated(reply: &str) -> Option<Finding> {
    let reply = reply.trim_end();
    if reply.trim().is_empty() {
        return None;
    }
    let found = |detail: String| {
        Some(Finding::new(
            Label::Truncated,
            detail,
            "Your last reply ended mid-sentence; finish your thoughts.",
        ))
    };
    if reply.lines().filter(|l| is_fence(l)).count() % 2 == 1 {
        return found("it ends inside a code block".into());
    }
    let prose = strip_code_blocks(reply);
    if let Some(open) = unclosed_bracket(&prose) {
        return found(format!("a \"{open}\" is never closed"));
    }
    if reply.lines().last().is_some_and(is_fence) {
        // It ends with a complete code block.
        return None;
    }
    let lines: Vec<&str> = prose
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last_line = lines.last()?;
    let item = strip_list_marker(last_line).map(str::trim);
    if item == Some("") {
        return found("its last list item is empty".into());
    }
    let text = item.unwrap_or(last_line);
    if EMOTICONS.iter().any(|e| text.ends_with(e)) {
        return None;
    }
    let core = text.trim_end_matches(is_closer).trim_end();
    let closed = core.len() < text.len();
    let last = core.chars().last()?;
    let last_word = tokens(core)
        .last()
        .filter(|t| !t.number)
        .map(|t| t.norm.clone());
    let dangling = last_word.filter(|w| DANGLING.contains(&w.as_str()));
    if TERMINAL.contains(&last) {
        let trails_off = core.ends_with("...") || core.ends_with('…');
        if let (true, Some(w)) = (trails_off, dangling) {
            return found(format!("it trails off after \"{w}\""));
        }
        return None;
    }
    if matches!(
        last,
        ',' | ';' | ':' | '-' | '–' | '—' | '/' | '&' | '+' | '=' | '(' | '[' | '{'
    ) {
        return found(format!("it ends with \"{last}\""));
    }
    if !last.is_alphanumeric() {
        // An emoji, a table border, a unit sign: a deliberate end.
        return None;
    }
    if let Some(w) = dangling {
        return found(format!("it ends with \"{w}\""));
    }
    let ends_with_link = core
        .split_whitespace()
        .last()
        .is_some_and(|w| w.contains("://") || w.starts_with("www."));
    if closed || ends_with_link || last_line.starts_with('|') {
        return None;
    }
    if item.is_some() {
        let others: Vec<&str> = lines[..lines.len() - 1]
            .iter()
            .filter_map(|l| strip_list_marker(l))
            .collect();
        let punctuated = |l: &&str| l.trim_end().trim_end_matches(is_closer).ends_with(TERMINAL);
        return if others.len() >= 2 && others.iter().all(punctuated) {
            found("its last list item stops without the punctuation the others have".into())
        } else {
            None
        };
    }
    let all = sentences(&prose);
    let ended = all
        .iter()
        .filter(|s| s.trim_end_matches(is_closer).ends_with(TERMINAL))
        .count();
    let last_len = all.last().map_or(0, |s| tokens(s).len());
    if ended >= 1 || last_len >= 12 {
        found(format!(
            "it stops without final punctuation after \"{}\"",
            tail(core, 40)
        ))
    } else {
        None
    }
}

/// The last `max` characters of `s`, starting at a word.
fn tail(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let cut: String = s.chars().skip(n - max).collect();
    match cut.split_once(' ') {
        Some((_, rest)) => format!("…{rest}"),
        None => format!("…{cut}"),
    }
}

/// The first bracket left open, ignoring emoticons such as ":(" and stray closers such as
/// the ")" of "1)".
fn unclosed_bracket(text: &str) -> Option<char> {
    let mut stack: Vec<char> = Vec::new();
    let mut prev = ' ';
    for c in text.chars() {
        match c {
            '(' | '[' | '{' if !matches!(prev, ':' | ';' | '=' | '-') => stack.push(c),
            ')' | ']' | '}' => {
                let opener = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.last() == Some(&opener) {
                    stack.pop();
                }
            }
            _ => {}
        }
        prev = c;
    }
    stack.first().copied()
}

// ---------------------------------------------------------------------------------------
// repeated

/// Words in a run that, appearing twice outside lists, counts as a repetition.
const NGRAM: usize = 8;
/// Shortest sentence (in words) whose second appearance counts.
const MIN_SENTENCE: usize = 4;

/// `repeated`: the same sentence twice (at least four words; list items included), the
/// same run of eight words twice in running text (list items excluded, since parallel items
/// legitimately share wording), or a short phrase looping three times in a row.
pub fn check_repeated(reply: &str) -> Option<Finding> {
    let prose = strip_code_blocks(reply);
    let found = |detail: String| {
        Some(Finding::new(
            Label::Repeated,
            detail,
            "Your last reply repeated itself; say each thing once.",
        ))
    };

    let mut seen: HashSet<String> = HashSet::new();
    for s in sentences(&prose) {
        let s = strip_list_marker(s).unwrap_or(s);
        let words = norms(s);
        if words.len() >= MIN_SENTENCE && !seen.insert(words.join(" ")) {
            return found(format!("the sentence \"{}\" appears twice", shorten(s, 80)));
        }
    }

    let mut runs: HashSet<Vec<String>> = HashSet::new();
    for line in prose.lines() {
        let words = norms(line);
        if let Some(phrase) = looping_phrase(&words) {
            return found(format!("\"{phrase}\" loops"));
        }
        if strip_list_marker(line).is_some() {
            continue;
        }
        // Runs never span a line break, so a paragraph end followed by a similar paragraph
        // start does not make a run.
        for w in words.windows(NGRAM) {
            if !runs.insert(w.to_vec()) {
                return found(format!("\"{}\" appears twice", w.join(" ")));
            }
        }
    }
    None
}

/// A phrase of one to four words repeated at least three times in a row and covering at
/// least six words ("and then and then and then").
fn looping_phrase(words: &[String]) -> Option<String> {
    for p in 1..=4 {
        let mut run = 0;
        for i in p..words.len() {
            if words[i] == words[i - p] {
                run += 1;
                if run >= 2 * p && run + p >= 6 {
                    return Some(words[i + 1 - p..=i].join(" "));
                }
            } else {
                run = 0;
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// unanswered_question

const WH: &[&str] = &[
    "what", "what's", "when", "where", "where's", "which", "who", "who's", "whom", "whose", "why",
    "how", "how's",
];

/// Words that may precede a question word without changing the question.
const CONNECTIVES: &[&str] = &[
    "also", "and", "but", "so", "then", "oh", "ok", "okay", "plus", "well", "now", "hey", "hi",
    "or", "anyway", "btw",
];

const AUX: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "am",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "should",
    "shall",
    "may",
    "might",
    "must",
    "has",
    "have",
    "had",
    "isn't",
    "aren't",
    "don't",
    "doesn't",
    "didn't",
    "can't",
    "won't",
    "wouldn't",
    "shouldn't",
];

/// "how …" words that ask for an amount.
const HOW_QUANTITY: &[&str] = &[
    "many",
    "much",
    "old",
    "far",
    "tall",
    "big",
    "high",
    "deep",
    "wide",
    "heavy",
    "large",
    "fast",
    "expensive",
    "cheap",
];

/// "how …" words that ask for a time or duration.
const HOW_TIME: &[&str] = &["long", "often", "late", "early", "soon"];

const YES_NO_OPENERS: &[&str] = &[
    "yes",
    "no",
    "yeah",
    "yep",
    "nope",
    "nah",
    "sure",
    "certainly",
    "absolutely",
    "definitely",
    "indeed",
    "correct",
    "right",
    "true",
    "false",
    "unfortunately",
    "sadly",
    "not",
    "of",
];

const TIME_WORDS: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
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
    "today",
    "tomorrow",
    "tonight",
    "yesterday",
    "morning",
    "afternoon",
    "evening",
    "noon",
    "midnight",
    "daily",
    "weekly",
    "hourly",
    "never",
    "always",
    "weekday",
    "weekdays",
    "weekend",
    "weekends",
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
];

/// What kind of answer a question calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuestionKind {
    /// Yes or no ("Is the museum open on Mondays?"): a reply opening with "Yes" or "No"
    /// answers it.
    YesNo,
    /// An amount ("How tall…", "How much…"): a short reply with a number answers it.
    Quantity,
    /// A time, date or duration ("When…", "What time…", "How long…"): a short reply with a
    /// number or a time word ("Mondays", "tomorrow", "never") answers it.
    Time,
    /// Anything else: the reply must share a content word with it.
    Open,
}

/// One question the user asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The sentence as the user wrote it.
    pub text: String,
    /// Stems of its content words (stop words and question framing removed).
    pub words: Vec<String>,
    /// What kind of answer it calls for.
    pub kind: QuestionKind,
}

/// The questions in a user message: sentences ending in `?`, sentences opening with a
/// question word ("what", "how", …), and indirect questions ("I'd like to know when …").
/// Questions without any content word ("Why?", "Can you help me?") are left out.
pub fn questions(user: &str, min_word_len: usize) -> Vec<Question> {
    let prose = strip_code_blocks(user);
    let mut out: Vec<Question> = Vec::new();
    for s in sentences(&prose) {
        let s = strip_list_marker(s).unwrap_or(s).trim();
        let toks = tokens(s);
        let words: Vec<&str> = toks.iter().map(|t| t.norm.as_str()).collect();
        // "And how …", "Also, what …": look past a leading connective.
        let lead = words.iter().take_while(|w| CONNECTIVES.contains(w)).count();
        let Some(&first) = words.get(lead) else {
            continue;
        };
        let core = s.trim_end_matches(is_closer);
        let asks = core.ends_with('?')
            || (WH.contains(&first)
                && !core.ends_with('!')
                && !matches!(words.get(lead + 1), Some(&"a" | &"an")))
            || words.windows(2).any(|w| {
                matches!(w[0], "know" | "wondering" | "wonder" | "ask" | "me")
                    && (WH.contains(&w[1]) || matches!(w[1], "if" | "whether"))
            });
        if !asks {
            continue;
        }
        let has_wh = words.iter().any(|w| WH.contains(w));
        let kind = if words.windows(2).any(|w| {
            (w[0] == "how" && HOW_TIME.contains(&w[1]))
                || (matches!(w[0], "what" | "which")
                    && matches!(w[1], "time" | "year" | "date" | "day"))
        }) || words.contains(&"when")
        {
            QuestionKind::Time
        } else if words
            .windows(2)
            .any(|w| w[0] == "how" && HOW_QUANTITY.contains(&w[1]))
        {
            QuestionKind::Quantity
        } else if AUX.contains(&first) && !has_wh {
            QuestionKind::YesNo
        } else {
            QuestionKind::Open
        };
        let mut content: Vec<String> = Vec::new();
        for t in &toks {
            if crate::text::is_content(t, min_word_len) && !is_question_frame(&t.norm) {
                let st = stem(&t.norm);
                if !content.contains(&st) {
                    content.push(st);
                }
            }
        }
        if content.is_empty() {
            continue;
        }
        out.push(Question {
            text: s.to_string(),
            words: content,
            kind,
        });
    }
    out
}

/// Whether `reply` addresses `question`: it shares a content word with it, or it is terse
/// (at most eight words) and names something (see [`key_facts`], or a one- or two-word
/// reply opening with a capital) or gives a number, or it
/// opens with "yes"/"no" and the question is a yes-no one, or it is short (at most twenty
/// words) with a number and the question asks for an amount, or with a number or time word
/// and the question asks for a time.
pub fn is_answered(question: &Question, reply: &str) -> bool {
    let reply_tokens = tokens(reply);
    let stems: HashSet<String> = reply_tokens.iter().map(|t| stem(&t.norm)).collect();
    if question.words.iter().any(|w| stems.contains(w)) {
        return true;
    }
    // A terse reply that names something or gives a number ("Canberra.", "Jane Austen")
    // is an attempt at an answer even without the question's words.
    let terse_fact = reply_tokens.len() <= 8
        && (!key_facts(reply).is_empty()
            || (reply_tokens.len() <= 2
                && reply_tokens.first().is_some_and(|t| {
                    t.raw.starts_with(char::is_uppercase) && !crate::text::is_stop_word(&t.norm)
                })));
    match question.kind {
        QuestionKind::YesNo => {
            let opening = strip_list_marker(reply).unwrap_or(reply);
            terse_fact
                || tokens(opening)
                    .first()
                    .is_some_and(|t| YES_NO_OPENERS.contains(&t.norm.as_str()))
        }
        QuestionKind::Quantity => {
            terse_fact || (reply_tokens.len() <= 20 && reply_tokens.iter().any(|t| t.number))
        }
        QuestionKind::Time => {
            terse_fact
                || (reply_tokens.len() <= 20
                    && reply_tokens
                        .iter()
                        .any(|t| t.number || TIME_WORDS.contains(&t.norm.as_str())))
        }
        QuestionKind::Open => terse_fact,
    }
}

/// `unanswered_question`: one finding per question of `user` that `reply` does not
/// address (see [`questions`] and [`is_answered`]).
pub fn check_unanswered(user: &str, reply: &str, min_word_len: usize) -> Vec<Finding> {
    questions(user, min_word_len)
        .into_iter()
        .filter(|q| !is_answered(q, reply))
        .map(|q| {
            let quoted = shorten(&q.text, 120);
            Finding::new(
                Label::UnansweredQuestion,
                format!("\"{quoted}\" (about: {})", q.words.join(", ")),
                format!("The user asked \"{quoted}\"; answer it directly."),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// ignored_context

/// The key facts of a passage: its numbers and proper names (capitalised words that do
/// not open a sentence, and acronyms), lowercased, in order, without repeats.
pub fn key_facts(passage: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in passage.lines() {
        let line = strip_list_marker(line).unwrap_or(line);
        let line = line.trim_start_matches(['#', '>', ' ']);
        let toks = tokens(line);
        for t in &toks {
            // Look past opening quotes and emphasis ("**Canberra**" is not a sentence start).
            let before = line[..t.start]
                .trim_end_matches(['"', '\'', '“', '‘', '*', '_', '`'])
                .trim_end()
                .chars()
                .last();
            let opens = before.is_none_or(|c| {
                TERMINAL.contains(&c)
                    || is_closer(c)
                    || matches!(
                        c,
                        ':' | ';' | '(' | '[' | '-' | '–' | '—' | '>' | '“' | '‘' | '|'
                    )
            });
            let acronym = t.raw.chars().count() >= 2 && t.raw.chars().all(|c| c.is_uppercase());
            let capital = t.raw.starts_with(char::is_uppercase);
            let fact = t.number
                || (!crate::text::is_stop_word(&t.norm) && (acronym || (capital && !opens)));
            if fact && !out.contains(&t.norm) {
                out.push(t.norm.clone());
            }
        }
    }
    out
}

/// `ignored_context`: passages from `retrieval_from` analyzers that were in the model
/// context for this reply (after the latest user message, or injected during the turn
/// before) and share content words with the user message (at least two, or all of them
/// when the message has fewer) brought key facts the user did not mention, and the reply
/// uses none of them. Passages are read paragraph by paragraph, so an unrelated passage in
/// the same injection does not count.
pub fn check_ignored_context(
    review: &Review<'_>,
    retrieval_from: &[String],
    min_word_len: usize,
) -> Option<Finding> {
    let asked: HashSet<String> = content_stems(review.user, min_word_len)
        .into_iter()
        .collect();
    if asked.is_empty() {
        return None;
    }
    let need = asked.len().min(2);
    let user_words: HashSet<String> = norms(review.user).into_iter().collect();
    let mut facts: Vec<String> = Vec::new();
    let mut sources: BTreeSet<&str> = BTreeSet::new();
    for inj in &review.injected {
        if !matches!(inj.position, Position::AfterUser | Position::TurnBefore)
            || !retrieval_from.iter().any(|a| a == inj.analyzer)
        {
            continue;
        }
        for passage in paragraphs(inj.content) {
            let shared = content_stems(passage, min_word_len)
                .into_iter()
                .filter(|s| asked.contains(s))
                .count();
            if shared < need {
                continue;
            }
            for f in key_facts(passage) {
                if !user_words.contains(&f) && !facts.contains(&f) {
                    facts.push(f);
                    sources.insert(inj.analyzer);
                }
            }
        }
    }
    if facts.is_empty() {
        return None;
    }
    // Numbers first: they are the facts a reply most visibly uses or drops.
    facts.sort_by_key(|f| !f.starts_with(|c: char| c.is_ascii_digit()));
    let said: HashSet<String> = norms(review.reply).into_iter().collect();
    if facts.iter().any(|f| said.contains(f)) {
        return None;
    }
    let examples = facts.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    let from = sources.into_iter().collect::<Vec<_>>().join(", ");
    Some(Finding::new(
        Label::IgnoredContext,
        format!("passages from {from} on the question offered {examples}; the reply used none"),
        format!(
            "Your last reply ignored the retrieved passages (they give {examples}); base your answer on them."
        ),
    ))
}

/// Paragraphs of a text: runs of lines separated by blank lines.
fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

// ---------------------------------------------------------------------------------------
// repeats_correction

/// Whether `reply_words` (normalised tokens of a reply) state `value`: its words in a row,
/// or, for a value with numbers, its numbers in a row ("512 m" is stated by "512 metres").
fn states(reply_words: &[String], reply_numbers: &[String], value: &str) -> bool {
    let words = norms(value);
    if contains_seq(reply_words, &words) {
        return true;
    }
    let numbers: Vec<String> = tokens(value)
        .into_iter()
        .filter(|t| t.number)
        .map(|t| t.norm)
        .collect();
    contains_seq(reply_numbers, &numbers)
}

/// `repeats_correction`: a correction from a `corrections_from` analyzer, anywhere in the
/// context, says the reply should not state `stated` for a claim, and this reply states
/// `stated` again, does not state `expected`, and is about the claim (shares a content word
/// with it, or the user message does). One finding per correction.
pub fn check_repeats_correction(
    review: &Review<'_>,
    corrections_from: &[String],
    min_word_len: usize,
) -> Vec<Finding> {
    let words = norms(review.reply);
    let numbers: Vec<String> = tokens(review.reply)
        .into_iter()
        .filter(|t| t.number)
        .map(|t| t.norm)
        .collect();
    let mut topic: HashSet<String> = all_stems(review.reply).into_iter().collect();
    topic.extend(content_stems(review.user, min_word_len));
    let mut out: Vec<Finding> = Vec::new();
    let mut done: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    for inj in &review.injected {
        if !corrections_from.iter().any(|a| a == inj.analyzer) {
            continue;
        }
        for c in parse_corrections(inj.content) {
            let key = (norms(&c.stated), norms(&c.expected));
            if key.0 == key.1 || done.contains(&key) {
                continue;
            }
            if !states(&words, &numbers, &c.stated)
                || states(&words, &numbers, &c.expected)
                || !about_claim(&c, &topic, min_word_len)
            {
                continue;
            }
            done.push(key);
            out.push(Finding::new(
                Label::RepeatsCorrection,
                format!(
                    "it states {} again for \"{}\"; {} said {} ({})",
                    c.stated,
                    shorten(&c.claim, 80),
                    inj.analyzer,
                    c.expected,
                    c.source
                ),
                format!(
                    "You repeated {} although the {} said {}; use {}.",
                    c.stated, inj.analyzer, c.expected, c.expected
                ),
            ));
        }
    }
    out
}

/// Whether the claim's own words (not those of the stated value) meet `topic`.
fn about_claim(c: &Correction, topic: &HashSet<String>, min_word_len: usize) -> bool {
    let value: HashSet<String> = content_stems(&c.stated, 1).into_iter().collect();
    let own: Vec<String> = content_stems(&c.claim, min_word_len)
        .into_iter()
        .filter(|s| !value.contains(s))
        .collect();
    own.is_empty() || own.iter().any(|s| topic.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.label.as_str()).collect()
    }

    // empty ------------------------------------------------------------------------------

    #[test]
    fn blank_and_filler_replies_are_empty() {
        for r in [
            "",
            "   \n\t",
            "...",
            "Sure!",
            "Okay, let me check.",
            "Great question! Here is the answer:",
            "Hmm… one moment.",
        ] {
            assert!(check_empty(r).is_some(), "{r:?}");
        }
    }

    #[test]
    fn short_real_answers_are_not_empty() {
        for r in [
            "Yes.",
            "42",
            "Paris.",
            "No, it is closed on Mondays.",
            "Sure, 12 euros.",
        ] {
            assert_eq!(check_empty(r), None, "{r:?}");
        }
    }

    // truncated --------------------------------------------------------------------------

    #[test]
    fn replies_that_stop_mid_sentence_are_truncated() {
        for r in [
            "The museum opens at 9 am and",
            "You can pay by card, cash,",
            "Here are the options:",
            "Use this:\n```rust\nfn main() {\n",
            "The fare (for adults is 12 euros.",
            "Steps:\n1. Buy a ticket.\n2. Validate it.\n3.",
            "Steps:\n1. Buy a ticket.\n2. Validate it.\n3. Board the train",
            "Paris is the capital of France. It has about two million",
            "It depends on the season and the...",
        ] {
            let f = check_truncated(r);
            assert_eq!(f.as_ref().map(|f| f.label), Some(Label::Truncated), "{r:?}");
        }
    }

    #[test]
    fn complete_replies_are_not_truncated() {
        for r in [
            // A question mark inside a quote, then a full stop.
            "She asked \"is it open?\" and the guide said it opens at nine.",
            // Ends on a closing quote after the question mark.
            "The sign over the door reads \"Why wait?\"",
            "Paris",
            "The capital is Paris",
            "Bring these:\n- passport\n- ticket\n- a warm coat",
            "Run it like this:\n```\ncargo run\n```",
            "Trains leave hourly (from 6 am to 11 pm).",
            "No trains on Sunday :(",
            "Enjoy the trip 🚆",
            "Book online. See https://northwind.example/tickets",
            "1) Buy a ticket.\n2) Board.",
            "| day | first |\n|---|---|\n| Mon | 6:00 |",
        ] {
            assert_eq!(check_truncated(r), None, "{r:?}");
        }
    }

    // repeated ---------------------------------------------------------------------------

    #[test]
    fn repeated_sentences_runs_and_loops_are_found() {
        for r in [
            "The tower is 330 m tall. It opened in 1889. The tower is 330 m tall.",
            "You need a valid ticket for the train to Oxford today and you need a valid ticket for the train to Oxford today.",
            "It is a very very very very very very tall tower.",
            "and then and then and then and then",
            "- Bring your passport with you.\n- Bring your passport with you.",
        ] {
            assert!(check_repeated(r).is_some(), "{r:?}");
        }
    }

    #[test]
    fn a_list_whose_items_start_alike_is_not_repeated() {
        let list = "You can buy tickets:\n\
            - You can buy tickets at the station from the machines on platform 1.\n\
            - You can buy tickets at the station from the staffed office near the entrance.\n\
            - You can buy tickets online through the app before you travel.";
        assert_eq!(check_repeated(list), None);
        let schedule = "- Monday: trains every 15 minutes from 6 am to 11 pm\n\
            - Tuesday: trains every 15 minutes from 6 am to 11 pm";
        assert_eq!(check_repeated(schedule), None);
        assert_eq!(check_repeated("No, no. It is fine, really fine."), None);
    }

    // unanswered_question ----------------------------------------------------------------

    #[test]
    fn questions_are_found_by_mark_word_and_indirect_form() {
        let qs = questions(
            "Hi! What is the capital of Australia? Also how many people live there. \
             I'd like to know when the museum opens. Tell me a joke.",
            3,
        );
        let texts: Vec<&str> = qs.iter().map(|q| q.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "What is the capital of Australia?",
                "Also how many people live there.",
                "I'd like to know when the museum opens."
            ]
        );
        assert_eq!(qs[0].words, ["capital", "australia"]);
        assert_eq!(qs[0].kind, QuestionKind::Open);
        assert_eq!(qs[1].kind, QuestionKind::Quantity);
        assert_eq!(qs[2].kind, QuestionKind::Time);
        // Framing-only questions carry no content.
        assert!(questions("Can you help me? Why?", 3).is_empty());
    }

    #[test]
    fn a_reply_with_the_questions_content_words_answers_it() {
        // Number-bearing and without synonyms, but it names what was asked about.
        let f = check_unanswered(
            "How long is the Channel Tunnel?",
            "The Channel Tunnel measures 50.45 km.",
            3,
        );
        assert!(f.is_empty());
        let f = check_unanswered(
            "Which trains stop at Didcot?",
            "Every stopping train calls there.",
            3,
        );
        assert!(f.is_empty(), "plural and singular meet");
        // Short direct answers by kind.
        assert!(check_unanswered(
            "Is the museum open on Mondays?",
            "No, it is closed then.",
            3
        )
        .is_empty());
        assert!(check_unanswered("How tall is Everest?", "About 8,849 m.", 3).is_empty());
        assert!(check_unanswered(
            "When does the ferry sail?",
            "Every morning, weather permitting.",
            3
        )
        .is_empty());
        // A time word is no amount.
        let f = check_unanswered(
            "How much does a pass cost?",
            "Our staff are always friendly.",
            3,
        );
        assert_eq!(labels(&f), ["unanswered_question"]);
    }

    #[test]
    fn an_unaddressed_question_is_named() {
        let f = check_unanswered(
            "Thanks! What is the capital of Australia? And is it sunny?",
            "Happy to help with your trip.",
            3,
        );
        assert_eq!(labels(&f), ["unanswered_question", "unanswered_question"]);
        assert!(
            f[0].advice
                .contains("\"What is the capital of Australia?\""),
            "{}",
            f[0].advice
        );
        assert!(f[1].detail.contains("sunny"));
        // A yes/no opener does not answer an open question.
        let f = check_unanswered("Do you know what the fare is?", "Yes.", 3);
        assert_eq!(labels(&f), ["unanswered_question"]);
    }

    // ignored_context --------------------------------------------------------------------

    const PASSAGE: &str = "fares.md > Northwind Rail > Fares > Child fares\n\
        Children under 5 travel free. Children aged 5 to 15 pay 6.50 euros on any Northwind train.";

    #[test]
    fn a_reply_that_skips_the_retrieved_facts_ignores_the_context() {
        let r = Review::new(
            "How much is a child fare?",
            "Child fares are cheaper than adult fares.",
        )
        .with_injected("rag", PASSAGE, Position::AfterUser);
        let f = check_ignored_context(&r, &["rag".into()], 3).expect("ignored");
        assert_eq!(f.label, Label::IgnoredContext);
        assert!(f.advice.contains("6.5"), "{}", f.advice);
        // Using one fact is enough.
        let r = Review::new(
            "How much is a child fare?",
            "Children aged 5 to 15 pay 6.50 euros.",
        )
        .with_injected("rag", PASSAGE, Position::TurnBefore);
        assert_eq!(check_ignored_context(&r, &["rag".into()], 3), None);
    }

    #[test]
    fn unrelated_old_or_foreign_passages_do_not_count() {
        let reply = "Child fares are cheaper than adult fares.";
        let unrelated = "The Eiffel Tower in Paris is 330 m tall.\n\nThe Louvre opens at 9 am.";
        let r = Review::new("How much is a child fare?", reply).with_injected(
            "rag",
            unrelated,
            Position::AfterUser,
        );
        assert_eq!(check_ignored_context(&r, &["rag".into()], 3), None);
        let r = Review::new("How much is a child fare?", reply).with_injected(
            "rag",
            PASSAGE,
            Position::Earlier,
        );
        assert_eq!(check_ignored_context(&r, &["rag".into()], 3), None);
        let r = Review::new("How much is a child fare?", reply).with_injected(
            "notes",
            PASSAGE,
            Position::AfterUser,
        );
        assert_eq!(check_ignored_context(&r, &["rag".into()], 3), None);
    }

    #[test]
    fn key_facts_are_numbers_and_names_not_sentence_openers() {
        assert_eq!(
            key_facts("Children under 5 travel free with Northwind Rail. The EU rules apply."),
            ["5", "northwind", "rail", "eu"]
        );
        assert_eq!(
            key_facts("The answer is **Canberra**. \"Sydney\" is bigger."),
            ["canberra"]
        );
    }

    // repeats_correction -----------------------------------------------------------------

    const CHECK: &str = "Fact-check of the previous reply (from the knowledge base):\n\
        - It said 512 m for \"The Eiffel Tower is 512 m tall.\"; the knowledge base says 330 m (landmarks.md > Paris > Eiffel Tower).\n\
        - It said 1,200 for \"The tower has 1,200 steps.\"; the knowledge base says 1,665 (landmarks.md > Paris > Eiffel Tower).";

    #[test]
    fn restating_a_corrected_value_is_found_with_numbers_normalised() {
        let r = Review::new(
            "How tall is it and how many steps?",
            "The Eiffel Tower is 512 metres tall and has 1200 steps.",
        )
        .with_injected("fact-check", CHECK, Position::AfterUser);
        let f = check_repeats_correction(&r, &["fact-check".into()], 3);
        assert_eq!(labels(&f), ["repeats_correction", "repeats_correction"]);
        assert_eq!(
            f[0].advice,
            "You repeated 512 m although the fact-check said 330 m; use 330 m."
        );
    }

    #[test]
    fn a_reply_with_the_expected_value_or_off_topic_does_not_repeat() {
        let from = ["fact-check".to_string()];
        let r = Review::new("How tall?", "Sorry: it is 330 m, not 512 m.").with_injected(
            "fact-check",
            CHECK,
            Position::AfterUser,
        );
        assert!(check_repeats_correction(&r, &from, 3).is_empty());
        let r = Review::new(
            "How far is the hotel?",
            "The hotel is 512 m from the station.",
        )
        .with_injected("fact-check", CHECK, Position::Earlier);
        assert!(check_repeats_correction(&r, &from, 3).is_empty());
        let r = Review::new("How tall is it?", "The Eiffel Tower is 512 m tall.").with_injected(
            "rag",
            CHECK,
            Position::AfterUser,
        );
        assert!(check_repeats_correction(&r, &from, 3).is_empty());
    }

    // review -----------------------------------------------------------------------------

    #[test]
    fn positions_follow_the_last_two_user_messages() {
        let m = |role, origin, content, name| Message {
            role,
            origin,
            content,
            name,
        };
        let msgs = vec![
            m(Role::User, Origin::User, "first", ""),
            m(Role::User, Origin::Injection, "old", "rag"),
            m(Role::Assistant, Origin::Assistant, "r1", ""),
            m(Role::User, Origin::User, "second", ""),
            m(Role::User, Origin::Injection, "before", "rag"),
            m(Role::Assistant, Origin::Assistant, "r2", ""),
            m(Role::User, Origin::User, "third", ""),
            m(Role::User, Origin::Injection, "after", "fact-check"),
            m(Role::Tool, Origin::Tool, "result", "add"),
            m(Role::Assistant, Origin::Assistant, "r3", ""),
        ];
        let r = Review::from_messages("third", "r3", msgs);
        let got: Vec<(&str, &str, Position)> = r
            .injected
            .iter()
            .map(|i| (i.analyzer, i.content, i.position))
            .collect();
        assert_eq!(
            got,
            [
                ("rag", "old", Position::Earlier),
                ("rag", "before", Position::TurnBefore),
                ("fact-check", "after", Position::AfterUser),
            ]
        );
    }

    #[test]
    fn an_empty_reply_yields_only_the_empty_finding() {
        let config = ReviewConfig::default();
        let f = run_checks(
            &Review::new("What is the capital of Australia?", "  "),
            &config,
        );
        assert_eq!(labels(&f), ["empty"]);
        let mut config = ReviewConfig::default();
        config.checks.remove(&Label::Empty);
        assert!(run_checks(&Review::new("What is the capital?", ""), &config).is_empty());
    }

    #[test]
    fn disabled_checks_do_not_run() {
        let mut config = ReviewConfig::default();
        let r = Review::new("", "The museum opens at 9 am and");
        assert_eq!(labels(&run_checks(&r, &config)), ["truncated"]);
        config.checks.remove(&Label::Truncated);
        assert!(run_checks(&r, &config).is_empty());
    }
}
