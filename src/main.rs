//! The `hull` binary: all the work happens in the library (`hull::cli`).
fn main() {
    std::process::exit(hull::cli::main());
}

/// The two C math functions hull's code calls (`f64::log2` and `f64::powf`,
/// in the cgroup v2 cpu weight and indicatif's rates), given by the `libm`
/// crate instead of the system's libm. They were all the binary took from
/// it; with them defined here the linker resolves them in the binary. That
/// left libm.so out of the dynamically linked build (~340 KiB less resident
/// memory in every hull process), and in the static build (build.rs) it
/// keeps glibc's libm.a objects, with their tables, out. The binary exports
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
