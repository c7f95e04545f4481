//! Tools the chat model can call, behind the [`ToolBackend`] trait. Plugin libraries
//! implement it through [`crate::plugins::bridge`].

use std::sync::Arc;
use std::time::Duration;

use crate::model::{BoxFuture, ToolSpec};

/// Something that can run a tool call.
pub trait ToolBackend: Send + Sync + 'static {
    /// Runs the call; `Err` carries a message for the error event (S35).
    fn call(
        &self,
        arguments: serde_json::Value,
        session: Arc<str>,
    ) -> BoxFuture<'static, Result<String, String>>;
}

/// One configured tool.
#[derive(Clone)]
pub struct ToolEntry {
    /// What the model is told.
    pub spec: ToolSpec,
    /// Timeout of one call.
    pub timeout: Duration,
    /// How to run it.
    pub backend: Arc<dyn ToolBackend>,
}

impl std::fmt::Debug for ToolEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolEntry")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}
