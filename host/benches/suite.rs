//! The host's benchmark suite, the same as `murmur bench` (see `murmur::bench` and
//! docs/performance.md): it builds the fixture plugin first, then runs every scenario or
//! those named, with `murmur bench`'s options.
//!
//! ```text
//! cargo bench -p murmur --bench suite
//! cargo bench -p murmur --bench suite -- turns --rounds 3
//! ```

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "suite", about = "The host's benchmark suite (murmur bench)")]
struct Args {
    #[command(flatten)]
    options: murmur::bench::Options,
}

fn main() -> ExitCode {
    murmur::cli::passive_openmp();
    // `cargo bench` passes `--bench` to every bench target.
    let args = Args::parse_from(std::env::args_os().filter(|a| a != "--bench"));
    let mut options = args.options;
    let result = (|| {
        if options.plugins.is_none() {
            options.plugins = Some(murmur::bench::build_fixture()?);
        }
        murmur::bench::run(&options)
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("suite: {e:#}");
            ExitCode::FAILURE
        }
    }
}
