//! Test fixture: the `configurable` analyzer, whose every behaviour comes from its config
//! table, so that each SPEC rule can be driven from a config file.
//!
//! ```toml
//! [[analyzer]]
//! name = "notes"
//! plugin = "configurable"
//! hooks = ["turn_complete"]
//! [analyzer.config]
//! delay_ms = 50                    # work time; checks cancellation every 5 ms
//! role = "system"                  # system | user | assistant | tool
//! text = "note from {name} about turn {turn} ({hook})"
//! key = "notes"                    # optional supersede key
//! count = 1                        # injections per run
//! fail = false                     # return an error instead
//! panic = false                    # panic inside analyze
//! complete_tries = 1               # with [analyzer.config.complete]: calls per run
//!
//! [analyzer.config.complete]       # optional: call the host's `complete` service
//! system = "Answer in JSON."       # a CompletionRequest (messages, json_schema, ...);
//! messages = [{ role = "user", content = "... {try} ..." }]   # {try}: 1, 2, ...
//! ```
//!
//! `{completion}` in `text` becomes one line per answer: its JSON, or `error: ...`.

use std::time::{Duration, Instant};

use murmur_plugin_api::{
    export_plugin, Analyzer, CompletionRequest, Config, Context, Error, Hook, Host, Injection,
    Level, Result, Role,
};
use serde::Deserialize;

/// Settings of the `configurable` analyzer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default = "default_role")]
    pub role: String,
    #[serde(default = "default_text")]
    pub text: String,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub fail: bool,
    #[serde(default)]
    pub panic: bool,
    /// Only act on these turns (empty = every turn).
    #[serde(default)]
    pub turns: Vec<u64>,
    /// Name used in `{name}`; defaults to the analyzer export name.
    #[serde(default)]
    pub label: Option<String>,
    /// Calls the host's `complete` service with this request, `complete_tries` times.
    #[serde(default)]
    pub complete: Option<CompletionRequest>,
    #[serde(default = "one")]
    pub complete_tries: usize,
}

fn default_role() -> String {
    "system".into()
}
fn default_text() -> String {
    "{name}: note about turn {turn} ({hook})".into()
}
fn one() -> usize {
    1
}

/// The analyzer.
pub struct Configurable {
    settings: Settings,
    role: Role,
}

impl Analyzer for Configurable {
    const NAME: &'static str = "configurable";
    const DESCRIPTION: &'static str =
        "test fixture driven by its config (delay, role, key, text, fail, panic)";
    const HOOKS: &'static [Hook] = &[Hook::TurnComplete];

    fn new(config: Config) -> Result<Self> {
        let settings: Settings = config.parse()?;
        let role = match settings.role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => return Err(Error::config(format!("unknown role `{other}`"))),
        };
        Ok(Configurable { settings, role })
    }

    fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
        let s = &self.settings;
        if !s.turns.is_empty() && !s.turns.contains(&ctx.turn()) {
            return Ok(vec![]);
        }
        let until = Instant::now() + Duration::from_millis(s.delay_ms);
        while Instant::now() < until {
            if host.cancelled() {
                return Err(Error::cancelled());
            }
            std::thread::sleep(
                Duration::from_millis(5).min(until.saturating_duration_since(Instant::now())),
            );
        }
        if s.panic {
            panic!("configurable analyzer asked to panic");
        }
        if s.fail {
            return Err(Error::msg("configurable analyzer asked to fail"));
        }
        let runs = host
            .state_get("runs")
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        host.state_put("runs", &runs.to_string());
        host.log(Level::Debug, &format!("run {runs} for turn {}", ctx.turn()));
        let name = s.label.as_deref().unwrap_or(Self::NAME);
        let mut completions = Vec::new();
        if let Some(request) = &s.complete {
            for attempt in 1..=s.complete_tries {
                let mut request = request.clone();
                for m in &mut request.messages {
                    m.content = m.content.replace("{try}", &attempt.to_string());
                }
                completions.push(match host.complete(&request) {
                    Ok(c) => c.json.map_or(c.text, |j| j.to_string()),
                    Err(e) => format!("error: {e}"),
                });
            }
        }
        let completions = completions.join("\n");
        Ok((1..=s.count)
            .map(|i| {
                let text = s
                    .text
                    .replace("{name}", name)
                    .replace("{turn}", &ctx.turn().to_string())
                    .replace("{step}", &ctx.step().to_string())
                    .replace("{hook}", ctx.hook().as_str())
                    .replace("{session}", ctx.session_id())
                    .replace("{i}", &i.to_string())
                    .replace("{runs}", &runs.to_string())
                    .replace("{completion}", &completions);
                let injection = Injection::new(self.role, text);
                match &s.key {
                    Some(k) => injection.with_key(k.clone()),
                    None => injection,
                }
            })
            .collect())
    }
}

export_plugin! {
    name: "testing-configurable",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [Configurable],
    tools: [],
}
