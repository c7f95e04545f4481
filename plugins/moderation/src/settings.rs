//! The `[analyzer.config]` table of the moderation analyzer.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `[analyzer.config]` table. Every field has a default, so the table may be left out.
/// See the crate docs for an example.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Detectors to run, by label (`email`, `card`, …, `prompt_injection`, `abuse` or
    /// `abuse:<category>`). Default: none listed, meaning every detector.
    pub detectors: Option<Vec<String>>,
    /// Detectors to turn off, same names as `detectors`. Default: empty.
    pub disabled: Vec<String>,
    /// Least Shannon entropy (bits per character) of a `generic_secret` value. Default 3.5.
    pub entropy_threshold: f64,
    /// Least length of a `generic_secret` value. Default 16.
    pub min_secret_length: usize,
    /// More prompt-injection phrases: regular expressions, matched case-insensitively
    /// (ASCII) against user messages and retrieved passages. Default: empty.
    pub extra_injection_phrases: Vec<String>,
    /// Words or phrases added to abuse categories (a new category name creates the
    /// category, labelled `abuse:<name>`). Default: empty.
    pub abuse_add: BTreeMap<String, Vec<String>>,
    /// Categories whose built-in words are replaced by these (an empty list turns the
    /// category off). Default: empty.
    pub abuse_replace: BTreeMap<String, Vec<String>>,
    /// A `[models.NAME]` to ask, through the host's `complete` service, about messages the
    /// rules did not flag. Default: none (no model call).
    pub classifier_model: Option<String>,
    /// Most characters of a message sent to the classifier model. Default 4000.
    pub classifier_max_chars: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            detectors: None,
            disabled: Vec::new(),
            entropy_threshold: 3.5,
            min_secret_length: 16,
            extra_injection_phrases: Vec::new(),
            abuse_add: BTreeMap::new(),
            abuse_replace: BTreeMap::new(),
            classifier_model: None,
            classifier_max_chars: 4000,
        }
    }
}
