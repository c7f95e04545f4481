//! Broken fixture: the `crashes` analyzer does what no analyzer may, chosen by its config,
//! on the turns it names. Only an out-of-process host (`isolation = "process"`) survives it.
//!
//! ```toml
//! [[analyzer]]
//! name = "crash"
//! plugin = "crashes"
//! isolation = "process"
//! [analyzer.config]
//! mode = "segfault"   # segfault | abort | exit | allocate | loop
//! turns = [1, 2]      # the turns it misbehaves on; on others it injects a note
//! ```

use murmur_plugin_api::{
    export_plugin, Analyzer, Config, Context, Error, Hook, Host, Injection, Result,
};
use serde::Deserialize;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Write through a null pointer (SIGSEGV).
    Segfault,
    /// `std::process::abort` (SIGABRT).
    Abort,
    /// `std::process::exit(3)`.
    Exit,
    /// Allocate and touch memory until the allocator fails.
    Allocate,
    /// Spin forever, ignoring cancellation.
    Loop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
    /// Misbehave only on these turns (empty: every turn).
    #[serde(default)]
    turns: Vec<u64>,
}

/// The analyzer.
pub struct Crashes {
    settings: Settings,
}

impl Analyzer for Crashes {
    const NAME: &'static str = "crashes";
    const DESCRIPTION: &'static str =
        "broken fixture: segfaults, aborts, exits, allocates without bound or loops forever";
    const HOOKS: &'static [Hook] = &[Hook::TurnStart];

    fn new(config: Config) -> Result<Self> {
        let settings: Settings = config
            .parse()
            .map_err(|e| Error::config(format!("crashes: {e}")))?;
        Ok(Crashes { settings })
    }

    fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
        let turns = &self.settings.turns;
        if !turns.is_empty() && !turns.contains(&ctx.turn()) {
            return Ok(vec![Injection::context(format!(
                "crashes: turn {} went fine",
                ctx.turn()
            ))]);
        }
        match self.settings.mode {
            Mode::Segfault => {
                let null: *mut u8 = std::ptr::null_mut();
                // SAFETY: none; this fixture crashes on purpose to test the host's isolation.
                unsafe { null.write_volatile(1) };
                Ok(Vec::new())
            }
            Mode::Abort => std::process::abort(),
            Mode::Exit => std::process::exit(3),
            Mode::Allocate => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // 64 MiB at a time, every page touched so it is really taken.
                    hoard.push(vec![1u8; 64 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Mode::Loop => loop {
                std::hint::spin_loop();
            },
        }
    }
}

export_plugin! {
    name: "testing-crashes",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [Crashes],
    tools: [],
}
