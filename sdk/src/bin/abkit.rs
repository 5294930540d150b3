//! The `abkit` command-line tool; everything lives in `abkit::cli`.

fn main() -> std::process::ExitCode {
    abkit::cli::main()
}
