//! Test fixture: the `versioned` analyzer injects a context note that names the crate it
//! was built in (`murmur-testing-versioned-a` or `-b`, which build this same file), so a
//! test that replaces one library with the other sees which code the host runs.

use murmur_plugin_api::{export_plugin, Analyzer, Config, Context, Hook, Host, Injection, Result};

/// The analyzer.
pub struct Versioned;

impl Analyzer for Versioned {
    const NAME: &'static str = "versioned";
    const DESCRIPTION: &'static str = "test fixture: a note naming the crate that built it";
    const HOOKS: &'static [Hook] = &[Hook::TurnStart];

    fn new(_config: Config) -> Result<Self> {
        Ok(Versioned)
    }

    fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
        Ok(vec![Injection::context(format!(
            "{} about turn {}",
            env!("CARGO_PKG_NAME"),
            ctx.turn()
        ))])
    }
}

export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [Versioned],
    tools: [],
}
