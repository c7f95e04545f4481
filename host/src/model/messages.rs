//! [`Messages`]: a session's model messages, shared without copying.
//!
//! A session's history only grows at its end (a compaction, the one exception, starts a new
//! log). Every model input and every analyzer view is a prefix of it, so a snapshot is the
//! shared, append-only log and a length: taking one costs a reference count whatever the
//! length of the conversation, and appending never moves what a snapshot sees. The log is
//! `boxcar`'s append-only vector, whose elements stay where they are written.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ContextMessage;

/// A sequence of model messages: a prefix of an append-only log.
#[derive(Clone, Default)]
pub struct Messages {
    log: Arc<boxcar::Vec<ContextMessage>>,
    len: usize,
}

impl Messages {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The message at `index`.
    pub fn get(&self, index: usize) -> Option<&ContextMessage> {
        if index < self.len {
            self.log.get(index)
        } else {
            None
        }
    }

    /// The first message.
    pub fn first(&self) -> Option<&ContextMessage> {
        self.get(0)
    }

    /// The last message.
    pub fn last(&self) -> Option<&ContextMessage> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// The messages in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            messages: self,
            front: 0,
            back: self.len,
        }
    }

    /// A copy as a plain vector.
    pub fn to_vec(&self) -> Vec<ContextMessage> {
        self.iter().cloned().collect()
    }

    /// Appends a message. When another sequence has appended to the shared log past this
    /// one's end (two owners of one snapshot), this one moves to a log of its own first.
    pub fn push(&mut self, message: ContextMessage) {
        if self.log.count() != self.len {
            *self = self.iter().cloned().collect();
        }
        self.log.push(message);
        self.len += 1;
    }

    /// Replaces the first `removed` messages with `replacement`, in a new log (the only
    /// change that is not an append; snapshots taken before keep the old one).
    pub fn replace_prefix(
        &mut self,
        removed: usize,
        replacement: impl IntoIterator<Item = ContextMessage>,
    ) {
        let removed = removed.min(self.len);
        *self = replacement
            .into_iter()
            .chain(self.iter().skip(removed).cloned())
            .collect();
    }
}

/// Iterator over [`Messages`].
#[derive(Clone)]
pub struct Iter<'a> {
    messages: &'a Messages,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a ContextMessage;

    fn next(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        let item = self.messages.get(self.front);
        self.front += 1;
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }

    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        self.messages.get(self.back)
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Messages {
    type Item = &'a ContextMessage;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<ContextMessage> for Messages {
    fn from_iter<I: IntoIterator<Item = ContextMessage>>(iter: I) -> Self {
        let log = boxcar::Vec::new();
        for m in iter {
            log.push(m);
        }
        let len = log.count();
        Messages {
            log: Arc::new(log),
            len,
        }
    }
}

impl From<Vec<ContextMessage>> for Messages {
    fn from(v: Vec<ContextMessage>) -> Self {
        v.into_iter().collect()
    }
}

impl std::ops::Index<usize> for Messages {
    type Output = ContextMessage;

    fn index(&self, index: usize) -> &ContextMessage {
        match self.get(index) {
            Some(m) => m,
            None => panic!(
                "message index {index} out of range for {} messages",
                self.len
            ),
        }
    }
}

impl PartialEq for Messages {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl PartialEq<Vec<ContextMessage>> for Messages {
    fn eq(&self, other: &Vec<ContextMessage>) -> bool {
        self.len == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Messages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Messages {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<ContextMessage>::deserialize(deserializer).map(Messages::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Messages) -> Vec<&str> {
        m.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn a_snapshot_keeps_its_length_while_the_history_grows() {
        let mut history = Messages::new();
        history.push(ContextMessage::user("one"));
        let snapshot = history.clone();
        history.push(ContextMessage::user("two"));
        assert_eq!(text(&snapshot), ["one"]);
        assert_eq!(text(&history), ["one", "two"]);
        assert_eq!(snapshot.last().map(|m| m.content.as_str()), Some("one"));
        assert!(snapshot.get(1).is_none());
    }

    #[test]
    fn two_owners_of_one_snapshot_append_apart() {
        let mut a = Messages::from(vec![ContextMessage::user("base")]);
        let mut b = a.clone();
        a.push(ContextMessage::user("a"));
        b.push(ContextMessage::user("b"));
        assert_eq!(text(&a), ["base", "a"]);
        assert_eq!(text(&b), ["base", "b"]);
    }

    #[test]
    fn replacing_a_prefix_leaves_older_snapshots_alone() {
        let mut history: Messages = ["1", "2", "3", "4"]
            .into_iter()
            .map(ContextMessage::user)
            .collect();
        let before = history.clone();
        history.replace_prefix(2, [ContextMessage::summary("s")]);
        assert_eq!(text(&history), ["s", "3", "4"]);
        assert_eq!(text(&before), ["1", "2", "3", "4"]);
        history.push(ContextMessage::user("5"));
        assert_eq!(text(&history), ["s", "3", "4", "5"]);
    }

    #[test]
    fn iterates_both_ways_and_serializes_as_a_list() {
        let m: Messages = ["a", "b", "c"]
            .into_iter()
            .map(ContextMessage::user)
            .collect();
        assert_eq!(
            m.iter()
                .rev()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
        assert_eq!(m.iter().skip(1).len(), 2);
        let json = serde_json::to_value(&m).expect("serializes");
        assert_eq!(json.as_array().map(Vec::len), Some(3));
        let back: Messages = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, m);
    }
}
