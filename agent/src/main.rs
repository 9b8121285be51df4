//! The `sgwall` binary: the command line is in `cli`; everything it runs is the `sgwall` library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
