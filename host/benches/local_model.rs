//! The `local` provider against the bare engine (see `murmur::bench::local_model` and
//! docs/performance.md); the same as `murmur bench local-model` with every option.
//!
//! ```text
//! cargo bench -p murmur --bench local_model [-- --rounds N --tokens N --threads N
//!     --warmup N --repeat-penalty X --only bare|provider]
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    murmur::cli::passive_openmp();
    let result = murmur::bench::local_model::parse_options(std::env::args_os().skip(1))
        .and_then(|options| murmur::bench::local_model::run(&options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local_model: {e:#}");
            ExitCode::FAILURE
        }
    }
}
