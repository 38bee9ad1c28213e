//! The `hull` binary: all the work happens in the library (`hull::cli`).
fn main() {
    std::process::exit(hull::cli::main());
}

/// The two C math functions hull's code calls (`f64::log2` and `f64::powf`,
/// in the cgroup v2 cpu weight and indicatif's rates), given by the `libm`
/// crate instead of the system's libm.so. They were all the binary took
/// from it; with them defined here the linker resolves them in the binary
/// and, linking with --as-needed, leaves libm.so out, so no hull process
/// (a runtime command, a container's monitor, a sandbox holder) loads and
/// relocates it: ~340 KiB less resident memory in each. The binary exports
/// no symbols, so these serve hull's own calls only; a unit test
/// (cgroups::v2::cpu) checks that the weights come out the same.
mod math {
    #[no_mangle]
    extern "C" fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }

    #[no_mangle]
    extern "C" fn log2(x: f64) -> f64 {
        libm::log2(x)
    }
}
