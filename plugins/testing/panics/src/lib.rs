//! Broken fixture: the `panics` analyzer panics in every run. The export layer catches the
//! panic inside the plugin; the host must report a failed run and keep going.

use murmur_plugin_api::{export_plugin, Analyzer, Config, Context, Hook, Host, Injection, Result};

/// Panics on every run.
pub struct Panics;

impl Analyzer for Panics {
    const NAME: &'static str = "panics";
    const DESCRIPTION: &'static str = "broken fixture: panics in analyze";
    const HOOKS: &'static [Hook] = &[Hook::TurnStart, Hook::TurnComplete];

    fn new(_config: Config) -> Result<Self> {
        Ok(Panics)
    }

    fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
        panic!("fixture panic in turn {}", ctx.turn());
    }
}

export_plugin! {
    name: "testing-panics",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [Panics],
    tools: [],
}
