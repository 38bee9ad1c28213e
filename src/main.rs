//! The `hull` binary: all the work happens in the library (`hull::cli`).
fn main() {
    std::process::exit(hull::cli::main());
}
