//! Seccomp: `linux.seccomp` profiles compiled into a BPF filter with
//! libseccomp, and the built-in default profile ([`runtime_default`]).
//!
//! A profile is compiled twice: once while the config is validated, so a bad
//! profile fails `create`/`exec` before anything exists, and again by the
//! process that loads it (compiling touches no kernel state). Loading is the
//! last thing before exec (see `linux::init::finalize_process`).
mod default_profile;
mod listener;
mod translate;

pub use default_profile::runtime_default;
pub use listener::{connect_listener, Listener};
pub use translate::{compile, Filter};

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext};
use oci_spec::runtime::Arch;
use serde_json::{json, Value};

/// What can go wrong with a seccomp profile: a field that is invalid or that
/// hull does not implement (both name the JSON path), or libseccomp/the
/// kernel refusing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("config.json: {field}: {why}")]
    Invalid { field: String, why: String },
    #[error("config.json: {field} is not supported: {why}")]
    Unsupported { field: String, why: String },
    #[error("seccomp: {what}: {source}")]
    Kernel {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp: {what}: {source}")]
    Libseccomp {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
}

impl SeccompError {
    fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        SeccompError::Invalid { field: field.into(), why: why.into() }
    }

    fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        SeccompError::Unsupported { field: field.into(), why: why.into() }
    }

    fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> Self {
        let what = what.into();
        move |source| SeccompError::Libseccomp { what, source }
    }
}

/// Every architecture the runtime-spec names, with libseccomp's token.
pub(crate) const ARCHES: &[(Arch, ScmpArch)] = &[
    (Arch::ScmpArchNative, ScmpArch::Native),
    (Arch::ScmpArchX86, ScmpArch::X86),
    (Arch::ScmpArchX86_64, ScmpArch::X8664),
    (Arch::ScmpArchX32, ScmpArch::X32),
    (Arch::ScmpArchArm, ScmpArch::Arm),
    (Arch::ScmpArchAarch64, ScmpArch::Aarch64),
    (Arch::ScmpArchMips, ScmpArch::Mips),
    (Arch::ScmpArchMips64, ScmpArch::Mips64),
    (Arch::ScmpArchMips64n32, ScmpArch::Mips64N32),
    (Arch::ScmpArchMipsel, ScmpArch::Mipsel),
    (Arch::ScmpArchMipsel64, ScmpArch::Mipsel64),
    (Arch::ScmpArchMipsel64n32, ScmpArch::Mipsel64N32),
    (Arch::ScmpArchPpc, ScmpArch::Ppc),
    (Arch::ScmpArchPpc64, ScmpArch::Ppc64),
    (Arch::ScmpArchPpc64le, ScmpArch::Ppc64Le),
    (Arch::ScmpArchS390, ScmpArch::S390),
    (Arch::ScmpArchS390x, ScmpArch::S390X),
    (Arch::ScmpArchParisc, ScmpArch::Parisc),
    (Arch::ScmpArchParisc64, ScmpArch::Parisc64),
    (Arch::ScmpArchRiscv64, ScmpArch::Riscv64),
    (Arch::ScmpArchLoongarch64, ScmpArch::Loongarch64),
    (Arch::ScmpArchM68k, ScmpArch::M68k),
    (Arch::ScmpArchSh, ScmpArch::Sh),
    (Arch::ScmpArchSheb, ScmpArch::Sheb),
];

/// The JSON name of a spec enum value ("SCMP_ARCH_X86_64"...).
pub(crate) fn spec_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The filter flags hull knows, with the libseccomp attribute each sets.
const FLAGS: &[&str] =
    &["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"];

/// The `linux.seccomp` part of `hull features`, in runc's shape: what this
/// build (and the libseccomp and kernel under it) can really do.
pub fn features() -> Value {
    // A scratch filter, never loaded, to ask libseccomp what it accepts.
    let Ok(mut scratch) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return json!({"enabled": false});
    };
    let mut archs: Vec<String> = ARCHES
        .iter()
        .filter(|(a, s)| *a != Arch::ScmpArchNative && (scratch.is_arch_present(*s).unwrap_or(false) || scratch.add_arch(*s).is_ok()))
        .map(|(a, _)| spec_name(a))
        .collect();
    archs.sort();
    // Setting a flag attribute makes libseccomp ask the kernel whether the
    // flag is known (SECCOMP_SET_MODE_FILTER with a NULL program).
    let supported: Vec<&str> = FLAGS
        .iter()
        .copied()
        .filter(|f| match *f {
            "SECCOMP_FILTER_FLAG_TSYNC" => scratch.set_ctl_tsync(true).is_ok(),
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => scratch.set_ctl_ssb(true).is_ok(),
            "SECCOMP_FILTER_FLAG_LOG" => scratch.set_ctl_log(true).is_ok(),
            // Loaded by hull itself (translate::wait_killable_filter).
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => crate::linux::syscall::seccomp_flags_known(
                crate::linux::syscall::SECCOMP_FILTER_FLAG_NEW_LISTENER | crate::linux::syscall::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            ),
            _ => false,
        })
        .collect();
    json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": archs,
        "knownFlags": FLAGS,
        "supportedFlags": supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_list_native_arch_and_flags() {
        let f = features();
        assert_eq!(f["enabled"], true);
        let archs: Vec<&str> = f["archs"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        #[cfg(target_arch = "x86_64")]
        assert!(archs.contains(&"SCMP_ARCH_X86_64") && archs.contains(&"SCMP_ARCH_X86"), "{archs:?}");
        assert!(!archs.contains(&"SCMP_ARCH_NATIVE"));
        assert!(f["actions"].as_array().unwrap().iter().any(|a| a == "SCMP_ACT_NOTIFY"));
        assert_eq!(f["knownFlags"].as_array().unwrap().len(), 4);
    }
}
