//! The `murmur` command. Everything lives in the library; see `murmur::cli`.

fn main() -> std::process::ExitCode {
    murmur::cli::main()
}
