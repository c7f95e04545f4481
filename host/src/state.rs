//! Per-analyzer, per-session state for the `state` host service, kept in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Key = (Arc<str>, Arc<str>, String);

/// Shared by all sessions of a host; keys are (analyzer, session, key).
#[derive(Debug, Clone, Default)]
pub struct StateStore {
    inner: Arc<Mutex<HashMap<Key, String>>>,
}

impl StateStore {
    /// Reads a value.
    pub fn get(&self, analyzer: &Arc<str>, session: &Arc<str>, key: &str) -> Option<String> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(analyzer.clone(), session.clone(), key.to_string()))
            .cloned()
    }

    /// Writes a value, or removes it with `None`.
    pub fn put(&self, analyzer: &Arc<str>, session: &Arc<str>, key: &str, value: Option<String>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k = (analyzer.clone(), session.clone(), key.to_string());
        match value {
            Some(v) => map.insert(k, v),
            None => map.remove(&k),
        };
    }

    /// Forgets everything of a session.
    pub fn forget_session(&self, session: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(_, s, _), _| &**s != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_kept_per_analyzer_and_session() {
        let s = StateStore::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let (s1, s2): (Arc<str>, Arc<str>) = ("s1".into(), "s2".into());
        s.put(&a, &s1, "k", Some("1".into()));
        assert_eq!(s.get(&a, &s1, "k").as_deref(), Some("1"));
        assert_eq!(s.get(&b, &s1, "k"), None);
        assert_eq!(s.get(&a, &s2, "k"), None);
        s.forget_session("s1");
        assert_eq!(s.get(&a, &s1, "k"), None);
    }
}
