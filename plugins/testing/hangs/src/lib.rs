//! Broken fixture: the `hangs` analyzer never returns and ignores cancellation. The host
//! must discard it at its hard timeout, report it, and not wait for it on exit.

use std::time::Duration;

use murmur_plugin_api::{export_plugin, Analyzer, Config, Context, Hook, Host, Injection, Result};

/// Never returns.
pub struct Hangs;

impl Analyzer for Hangs {
    const NAME: &'static str = "hangs";
    const DESCRIPTION: &'static str = "broken fixture: never returns, ignores cancellation";
    const HOOKS: &'static [Hook] = &[Hook::TurnComplete];

    fn new(_config: Config) -> Result<Self> {
        Ok(Hangs)
    }

    fn analyze(&self, _ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

export_plugin! {
    name: "testing-hangs",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [Hangs],
    tools: [],
}
