//! The config file as written: serde structs that mirror the TOML, with spans kept for the
//! keys that are validated after parsing. Every field is optional here; defaults and checks
//! live in [`super::Config::load`].

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub plugins_dir: Option<Spanned<String>>,
    pub allow_insecure_plugins: Option<bool>,
    pub quarantine_after: Option<Spanned<i64>>,
    pub system_prompt: Option<String>,
    pub max_steps: Option<Spanned<i64>>,
    pub defer_timeout: Option<Spanned<String>>,
    pub analyzer_timeout: Option<Spanned<String>>,
    pub tool_timeout: Option<Spanned<String>>,
    pub steering: Option<bool>,
    pub instructions_placement: Option<Spanned<String>>,
    pub record_model_input: Option<Spanned<String>>,
    /// A `[model]` table, or the name of a `[models.NAME]` table.
    pub model: Option<Spanned<toml::Value>>,
    /// Named models: `[models.NAME]`.
    #[serde(default)]
    pub models: std::collections::BTreeMap<String, Spanned<RawModel>>,
    #[serde(default, rename = "analyzer")]
    pub analyzers: Vec<Spanned<RawAnalyzer>>,
    #[serde(default, rename = "tool")]
    pub tools: Vec<Spanned<RawTool>>,
    /// `[context]`: compaction.
    pub context: Option<RawContext>,
    /// `[knowledge]`: the folder the `search` service indexes.
    pub knowledge: Option<RawKnowledge>,
    /// `[server]`: `murmur serve`.
    pub server: Option<RawServer>,
    /// `[store]`: where `murmur serve` keeps sessions.
    pub store: Option<RawStore>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub kind: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub lease_ttl: Option<Spanned<String>>,
    pub lease_wait: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<i64>>,
    pub tls_ca_file: Option<Spanned<String>>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub auth_token_env: Option<Spanned<String>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub max_message_chars: Option<Spanned<i64>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub max_request_messages: Option<Spanned<i64>>,
}

/// `[knowledge]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKnowledge {
    pub path: Spanned<String>,
    pub index: Option<Spanned<String>>,
    pub max_passage_chars: Option<Spanned<i64>>,
    pub tool: Option<bool>,
    pub tool_results: Option<Spanned<i64>>,
    pub embedding_model: Option<Spanned<String>>,
    pub semantic_weight: Option<Spanned<f64>>,
}

/// `[context]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    pub compaction: Option<Spanned<String>>,
    pub reserve_tokens: Option<Spanned<i64>>,
    pub summary_max_tokens: Option<Spanned<i64>>,
}

/// `[model]` or `[models.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub provider: Spanned<String>,
    /// `scripted`: the JSON Lines file of replies.
    pub script: Option<Spanned<String>>,
    /// `scripted`: characters per streamed chunk.
    pub chunk_chars: Option<Spanned<i64>>,
    /// `local`: the GGUF file.
    pub path: Option<Spanned<String>>,
    /// `local`: context length in tokens.
    pub context_length: Option<Spanned<i64>>,
    /// `local`: CPU threads.
    pub threads: Option<Spanned<i64>>,
    /// `local`: reuse the KV cache across calls.
    pub kv_cache_reuse: Option<Spanned<bool>>,
    /// Sampling temperature (0 = greedy).
    pub temperature: Option<Spanned<f64>>,
    /// Nucleus sampling mass.
    pub top_p: Option<Spanned<f64>>,
    /// Keep this many most likely tokens.
    pub top_k: Option<Spanned<i64>>,
    /// Penalty for repeated tokens.
    pub repeat_penalty: Option<Spanned<f64>>,
    /// Random seed.
    pub seed: Option<Spanned<i64>>,
    /// Most tokens per reply.
    pub max_tokens: Option<Spanned<i64>>,
    /// Stop strings.
    pub stop: Option<Vec<String>>,
    /// `openai`: the API root.
    pub base_url: Option<Spanned<String>>,
    /// `openai`: the model name the server knows.
    pub model: Option<Spanned<String>>,
    /// `openai`: environment variable with the API key.
    pub api_key_env: Option<Spanned<String>>,
    /// `openai`: time to wait for the server.
    pub timeout: Option<Spanned<String>>,
    /// `openai`: retries on 429, 5xx and connection errors.
    pub max_retries: Option<Spanned<i64>>,
    /// `openai`: stream the reply.
    pub stream: Option<Spanned<bool>>,
}

/// One `[[analyzer]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalyzer {
    pub name: Spanned<String>,
    pub plugin: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    pub hooks: Option<Spanned<Vec<Spanned<String>>>>,
    pub timeout: Option<Spanned<String>>,
    pub defer_timeout: Option<Spanned<String>>,
    pub ttl_turns: Option<Spanned<i64>>,
    pub every_n_turns: Option<Spanned<i64>>,
    /// The model its `complete` calls use by default (a `[models.NAME]` name).
    pub model: Option<Spanned<String>>,
    /// The SHA-256 its plugin file must have.
    pub sha256: Option<Spanned<String>>,
    /// `in_process` or `process`.
    pub isolation: Option<Spanned<String>>,
    /// With `process`: the child's address-space limit in MiB.
    pub memory_limit_mb: Option<Spanned<i64>>,
    /// Crashes or timeouts in a row before quarantine.
    pub quarantine_after: Option<Spanned<i64>>,
    pub config: Option<toml::Table>,
}

/// One `[[tool]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    pub name: Spanned<String>,
    pub plugin: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    /// The SHA-256 its plugin file must have.
    pub sha256: Option<Spanned<String>>,
    pub config: Option<toml::Table>,
}
