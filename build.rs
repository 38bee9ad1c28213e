//! Link settings of the `hull` binary that Cargo.toml cannot express.
//!
//! Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): hull is
//! a position-independent executable, and its ~360 KiB of .data.rel.ro
//! (vtables, serde's field-name tables, clap's and k8s-openapi's static
//! tables) need one R_X86_64_RELATIVE entry per pointer. As plain RELA
//! entries that is 450 KiB of .rela.dyn that the loader reads in every hull
//! process (a `state` or a container's monitor alike); packed, it is 6 KiB.
//! Measured (release, with the lean command line): peak RSS of `hull
//! state` 5.6 → 5.3 MiB, `create` 7.7 → 7.4 MiB, `run` 8.0 → 7.6 MiB.
//!
//! PIE itself stays by default. Linked as a fixed-address executable
//! (`HULL_LINK_NO_PIE=1 cargo build --release`), the relocated
//! .data.rel.ro stays clean file pages that a long-lived helper can drop,
//! and a container's monitor goes from ~820-900 to ~470 KiB Pss, a sandbox
//! holder from ~725 to ~380 KiB (commands 50-450 KiB less); in the static
//! build (a static non-PIE then) a monitor 956 -> 584 KiB, a holder ~390
//! either way, `create` 2.93 -> 2.84 MiB. The price is
//! that hull's own code, with the statically linked zstd and ring that
//! parse registry and image data, sits at the same address in every
//! process, the CRI daemon's included: address randomisation is worth
//! more than that by default; a packager who counts every pod's memory
//! can choose otherwise.
//!
//! DT_RELR needs glibc 2.36 (a dynamically linked binary asks for the
//! GLIBC_ABI_DT_RELR version at run time; a static one relocates itself
//! with the glibc it carries), so it is used only when building for the
//! build machine's own glibc and that glibc has it.
//!
//! Statically linked (glibc static-pie, `-C target-feature=+crt-static`
//! from .cargo/config.toml): no hull process maps a shared library or runs
//! the dynamic loader, and glibc's functions are placed by the hot-function
//! list like hull's own. Measured (release, list made from the static
//! build, peak RSS): `create` 4.5 -> 3.4 MiB, `run` 4.7 -> 3.6, `start`
//! 3.5 -> 2.5, `delete` 3.9 -> 2.9. Static, libseccomp must come from its
//! static archive: with the shared one the link succeeds and the binary
//! crashes at start-up, so that combination is refused here. A build
//! whose RUSTFLAGS replace the config's flags comes out dynamic and is
//! told so.
//!
//! Hot functions first (`--symbol-ordering-file=link/hot-symbols.txt`): the
//! kernel maps a binary's file pages 64 KiB at a time around each fault, so
//! the code a runtime command or a monitor runs costs resident memory by
//! how far it is spread through hull's 11 MiB of text, not by its size.
//! The list (made by tests/bench/hot_symbols.sh) puts it together. Only
//! rust-lld (rustc's default linker on x86_64-unknown-linux-gnu since 1.90)
//! is given the option; names it does not know are skipped. The names
//! carry hashes that change with hull's dependency graph and the compiler,
//! so the list records the Cargo.lock and rustc it was made for (a
//! fingerprint, [`fingerprint`]) and the build warns when they differ: a
//! stale list still links, but a list made before one dependency was added
//! matched 817 of its 1978 names and cost `create` 1.6 MiB of peak RSS.
//!
//! Hot constants first (`-T link/hot-rodata.ld`, made with the list): the
//! same holds for .rodata, where a `create` read 75 pages spread over
//! 1.3 MiB and kept 960 KiB of it resident. rustc's constants have no
//! symbols (`.L` names), but each has an input section of its own
//! (`.rodata..Lanon.<hash>.<n>`, `.rodata.<function>` for jump tables), so
//! the script gathers the touched ones into an output section `.rodata.hot`
//! placed before .rodata (INSERT keeps lld's default layout for the rest).
//! Patterns that match nothing, in a build the script was not made for,
//! only cost memory.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/hot-symbols.txt");
    println!("cargo:rerun-if-changed=link/hot-rodata.ld");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=HULL_LINK_NO_PIE");
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LINK_TYPE");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    let is_static = check_static(&target);
    if std::env::var_os("HULL_LINK_NO_PIE").is_some_and(|v| v == "1") {
        // After rustc's own -pie or -static-pie: the last one wins, and
        // after -static-pie a plain -no-pie would link dynamically.
        println!("cargo:rustc-link-arg-bins=-no-pie");
        if is_static {
            println!("cargo:rustc-link-arg-bins=-static");
        }
    } else if target == host && target.ends_with("-linux-gnu") && host_glibc_at_least(2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let repo = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let order = repo.join("link/hot-symbols.txt");
    let rustc = rustc_version();
    if order.is_file() && links_with_rust_lld(&target, &rustc) {
        warn_if_stale(&order, &repo.join("Cargo.lock"), &rustc);
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        let rodata = repo.join("link/hot-rodata.ld");
        if rodata.is_file() {
            println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", rodata.display());
        }
    }
}

/// Whether the binary is linked statically. Refuses a static link with the
/// shared libseccomp; says when a glibc build is not static.
fn check_static(target: &str) -> bool {
    if !target.ends_with("-linux-gnu") {
        return false;
    }
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let is_static = features.split(',').any(|f| f == "crt-static");
    let seccomp_static = std::env::var("LIBSECCOMP_LINK_TYPE").is_ok_and(|t| t == "static");
    if is_static && !seccomp_static {
        panic!("crt-static with a shared libseccomp links a binary that crashes at start-up: set LIBSECCOMP_LINK_TYPE=static (.cargo/config.toml does)");
    }
    if !is_static {
        println!(
            "cargo:warning=hull is linked dynamically (RUSTFLAGS in the environment replace .cargo/config.toml's -C target-feature=+crt-static): it works, but every hull process maps glibc and the loader (~1 MiB more) and link/hot-symbols.txt was made for the static build"
        );
    }
    is_static
}

/// A cargo warning when the hot-symbol list was made for another
/// Cargo.lock or rustc than this build's.
fn warn_if_stale(list: &std::path::Path, lock: &std::path::Path, rustc_version: &str) {
    let text = std::fs::read_to_string(list).unwrap_or_default();
    let recorded = text.lines().take_while(|l| l.starts_with('#')).find_map(|l| l.strip_prefix("# made for: "));
    let Ok(lock) = std::fs::read(lock) else { return };
    let current = fingerprint(&lock, rustc_version);
    if recorded.map(str::trim) != Some(current.as_str()) {
        println!(
            "cargo:warning=link/hot-symbols.txt was made for another Cargo.lock or rustc ({}, this build {current}): most of its names miss this build and its commands take more memory; run `make hot-symbols`",
            recorded.unwrap_or("not recorded")
        );
    }
}

/// FNV-1a 64 of Cargo.lock's bytes and `rustc -V`'s line, as
/// tests/bench/hot_symbols.py writes it into the list.
fn fingerprint(lock: &[u8], rustc_version: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in lock.iter().chain(rustc_version.as_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `rustc -V`'s line ("rustc 1.91.0 (f8297e351 2025-10-28)"), empty if
/// rustc cannot be run.
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether the binary is linked by rustc's own rust-lld: the default for
/// x86_64-unknown-linux-gnu from rustc 1.90 on, unless the build chooses
/// its linker (flags or a target linker setting).
fn links_with_rust_lld(target: &str, rustc_version: &str) -> bool {
    if target != "x86_64-unknown-linux-gnu" {
        return false;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    // RUSTC_LINKER: the linker Cargo was told to use for the target.
    if flags.contains("link") || std::env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let version = rustc_version.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 90)
}

/// The build machine's glibc version (`getconf GNU_LIBC_VERSION`: "glibc 2.36").
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return false };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else { return false };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
