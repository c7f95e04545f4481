//! Per-analyzer, per-session state for the `state` host service: in memory, or written
//! through to the session store when one is attached (then it survives a restart).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::store::Store;

type Key = (Arc<str>, Arc<str>, String);

/// Shared by all sessions of a host; keys are (analyzer, session, key).
#[derive(Debug, Clone, Default)]
pub struct StateStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Without a store, the values; with one, those the store failed to take.
    memory: Mutex<HashMap<Key, String>>,
    durable: OnceLock<Arc<Store>>,
}

impl StateStore {
    /// Keeps values in `store` from now on. Tools and analyzers built with a clone of this
    /// state store see the change.
    pub fn attach(&self, store: Arc<Store>) {
        let _ = self.inner.durable.set(store);
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<Key, String>> {
        self.inner
            .memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads a value.
    pub fn get(&self, analyzer: &Arc<str>, session: &Arc<str>, key: &str) -> Option<String> {
        let k = (analyzer.clone(), session.clone(), key.to_string());
        if let Some(v) = self.memory().get(&k) {
            return Some(v.clone());
        }
        let store = self.inner.durable.get()?;
        store.state_get(analyzer, session, key).unwrap_or_else(|e| {
            tracing::error!(analyzer = &**analyzer, session = &**session, "{e}");
            None
        })
    }

    /// Writes a value, or removes it with `None`.
    pub fn put(&self, analyzer: &Arc<str>, session: &Arc<str>, key: &str, value: Option<String>) {
        let k = (analyzer.clone(), session.clone(), key.to_string());
        let mut memory = self.memory();
        if let Some(store) = self.inner.durable.get() {
            match store.state_put(analyzer, session, key, value.as_deref()) {
                Ok(()) => {
                    memory.remove(&k);
                    return;
                }
                Err(e) => tracing::error!(
                    analyzer = &**analyzer,
                    session = &**session,
                    "{e}; the value is kept in memory only"
                ),
            }
        }
        match value {
            Some(v) => memory.insert(k, v),
            None => memory.remove(&k),
        };
    }

    /// Forgets everything of a session (in memory; the store deletes its own with the
    /// session).
    pub fn forget_session(&self, session: &str) {
        self.memory().retain(|(_, s, _), _| &**s != session);
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

    #[test]
    fn attached_state_survives_a_new_state_store_on_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let (a, s1): (Arc<str>, Arc<str>) = ("a".into(), "s1".into());
        {
            let s = StateStore::default();
            s.attach(Arc::new(Store::sqlite(&path).expect("open")));
            s.put(&a, &s1, "k", Some("kept".into()));
            s.put(&a, &s1, "gone", Some("x".into()));
            s.put(&a, &s1, "gone", None);
        }
        let s = StateStore::default();
        s.attach(Arc::new(Store::sqlite(&path).expect("reopen")));
        assert_eq!(s.get(&a, &s1, "k").as_deref(), Some("kept"));
        assert_eq!(s.get(&a, &s1, "gone"), None);
    }
}
