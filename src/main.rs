//! The `ferry` binary: everything, argument parsing included, is in the library's
//! `cli::main`, so the binary holds no logic of its own.

fn main() -> std::process::ExitCode {
    ferry::main()
}
