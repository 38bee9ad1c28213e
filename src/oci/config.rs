//! Loading config.json and refusing what hull cannot honour, before anything
//! is created (so a bad config leaves nothing behind).
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A loaded bundle: the parsed spec plus absolute paths.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Read and parse `<bundle>/config.json`; parse errors name the JSON path of
/// the offending field.
pub fn load_spec(path: &Path) -> Result<Spec> {
    let text = std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    parse_spec(&text)
}

pub fn parse_spec(text: &[u8]) -> Result<Spec> {
    let mut value: serde_json::Value = serde_json::from_slice(text).map_err(|e| Error::Config(e.to_string()))?;
    // As runc: a NUL byte would silently cut an argument, variable or name.
    if let Some(path) = find_nul(&value, &["annotations"]) {
        return Err(Error::Config(format!("{path}: contains a NUL byte")));
    }
    drop_unknown_capabilities(&mut value);
    from_value_naming_path(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::Config(inner.to_string())
        } else {
            Error::Config(format!("field {path}: {inner}"))
        }
    })
}

/// `value` as a T; on failure the error names the JSON path of what is
/// wrong. The plain deserializer goes first and serde_path_to_error only
/// when it fails, with the same result: its wrappers are ~160 KiB of code
/// that every `create` ran (and kept resident, with the pages around it)
/// for a config that parses.
pub fn from_value_naming_path<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> std::result::Result<T, serde_path_to_error::Error<serde_json::Error>> {
    match T::deserialize(&value) {
        Ok(v) => Ok(v),
        Err(_) => serde_path_to_error::deserialize(value),
    }
}

/// [`from_value_naming_path`] for JSON text. Like the streaming
/// serde_path_to_error call it stands for, text after the value is not
/// looked at.
pub fn from_slice_naming_path<T: serde::de::DeserializeOwned>(
    text: &[u8],
) -> std::result::Result<T, serde_path_to_error::Error<serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_slice(text);
    match T::deserialize(&mut de) {
        Ok(v) => Ok(v),
        Err(_) => serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(text)),
    }
}

/// The JSON path (`process.args[1]`) of the first string or key holding a
/// NUL byte, skipping the top-level objects named in `skip`. The path is
/// made only for a hit: formatting one for every node was a third of the
/// instructions `create` ran.
pub fn find_nul(value: &serde_json::Value, skip: &[&str]) -> Option<String> {
    let mut rev = Vec::new();
    if !nul_below(value, skip, &mut rev) {
        return None;
    }
    let mut path = String::new();
    for step in rev.iter().rev() {
        match step {
            Step::Key(k) if path.is_empty() => path.push_str(k),
            Step::Key(k) => {
                path.push('.');
                path.push_str(k);
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    Some(if path.is_empty() { ".".into() } else { path })
}

/// One step of a JSON path, for [`find_nul`].
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Whether `value` holds a NUL byte; if so `rev` gets the path to it,
/// innermost step first.
fn nul_below<'a>(value: &'a serde_json::Value, skip: &[&str], rev: &mut Vec<Step<'a>>) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
            let hit = nul_below(v, &[], rev);
            if hit {
                rev.push(Step::Index(i));
            }
            hit
        }),
        Value::Object(map) => map.iter().any(|(k, v)| {
            let hit = k.contains('\0') || (!skip.contains(&k.as_str()) && nul_below(v, &[], rev));
            if hit {
                rev.push(Step::Key(k));
            }
            hit
        }),
        _ => false,
    }
}

/// Capabilities this build does not know are skipped with a warning, as
/// runc does, so a config written for a newer kernel still runs.
fn drop_unknown_capabilities(value: &mut serde_json::Value) {
    let Some(caps) = value.pointer_mut("/process/capabilities").and_then(|c| c.as_object_mut()) else { return };
    let mut unknown = std::collections::BTreeSet::new();
    for set in caps.values_mut() {
        if let Some(list) = set.as_array_mut() {
            list.retain(|c| {
                let known = serde_json::from_value::<oci_spec::runtime::Capability>(c.clone()).is_ok();
                if !known {
                    unknown.insert(c.to_string());
                }
                known
            });
        }
    }
    if !unknown.is_empty() {
        log::warn!("ignoring unknown or unavailable capabilities: {}", unknown.into_iter().collect::<Vec<_>>().join(", "));
    }
}

impl Bundle {
    /// Load and validate the bundle in `dir`.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::path::absolute(dir).map_err(|e| Error::InvalidArgument(format!("bundle {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(Error::InvalidArgument(format!("bundle {} is not a directory", dir.display())));
        }
        let spec = load_spec(&dir.join("config.json"))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Config("root: missing (the container needs a rootfs)".into()))?;
        let rootfs = if root.path().is_absolute() { root.path().clone() } else { dir.join(root.path()) };
        if !rootfs.is_dir() {
            return Err(Error::Config(format!("root.path: {} is not a directory", rootfs.display())));
        }
        validate(&spec)?;
        Ok(Bundle { dir, rootfs, spec })
    }
}

/// Namespace types a config may ask for, and whether each is new or joined.
pub fn namespace_types(spec: &Spec) -> HashSet<LinuxNamespaceType> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|ns| ns.iter().map(|n| n.typ()).collect())
        .unwrap_or_default()
}

/// The ociVersion majors hull implements.
const SUPPORTED_MAJOR: u64 = 1;

/// ociVersion is SemVer; a config of another major version is written
/// against a spec hull does not implement.
fn check_version(version: &str) -> Result<()> {
    if version.is_empty() {
        return Err(Error::Config("ociVersion: missing".into()));
    }
    let major = version.split(['.', '-', '+']).next().and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(SUPPORTED_MAJOR) => Ok(()),
        Some(m) => Err(Error::unsupported(
            "ociVersion",
            format!(
                "{version:?} is of major version {m}; hull implements runtime-spec {SUPPORTED_MAJOR}.x (up to {})",
                super::state::OCI_VERSION
            ),
        )),
        None => Err(Error::Config(format!("ociVersion: {version:?} is not a SemVer version"))),
    }
}

/// Without a mount namespace the container shares the host's mount table:
/// anything hull would mount there would change the host. runc mounts
/// regardless (and leaves the mounts on the host after the container is
/// gone); hull refuses the fields that need a mount, naming them, and runs
/// the rest chrooted into root.path.
fn check_without_mount_namespace(spec: &Spec) -> Result<()> {
    let why = "needs a mount namespace (without one, mounting would change the host's mounts)";
    if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(Error::unsupported("mounts", why));
    }
    let linux = spec.linux().as_ref();
    if linux.and_then(|l| l.masked_paths().as_ref()).is_some_and(|p| !p.is_empty()) {
        return Err(Error::unsupported("linux.maskedPaths", why));
    }
    if linux.and_then(|l| l.readonly_paths().as_ref()).is_some_and(|p| !p.is_empty()) {
        return Err(Error::unsupported("linux.readonlyPaths", why));
    }
    if linux.and_then(|l| l.devices().as_ref()).is_some_and(|d| !d.is_empty()) {
        return Err(Error::unsupported("linux.devices", why));
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        return Err(Error::unsupported("root.readonly", why));
    }
    if linux.and_then(|l| l.rootfs_propagation().as_ref()).is_some() {
        return Err(Error::unsupported("linux.rootfsPropagation", why));
    }
    Ok(())
}

/// Everything hull checks before it creates anything.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec.process().as_ref().ok_or_else(|| Error::Config("process: missing".into()))?;
    validate_process(process)?;
    crate::linux::attrs::check(process, spec.linux().as_ref())?;
    // AppArmor/SELinux labels the host cannot apply are refused here.
    crate::linux::lsm::check_spec(spec, process)?;
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            crate::linux::idmap::request(spec, i, m)?;
            crate::linux::mount_options::parse(m.options().as_deref().unwrap_or(&[]))
                .map_err(|e| Error::Config(format!("mounts[{i}].options: {e}")))?;
        }
    }
    if let Some(hooks) = spec.hooks() {
        let all = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in all {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(Error::Config(format!("hooks.{kind}[{i}].path: {} is not absolute", h.path().display())));
                }
                if h.timeout().is_some_and(|t| t <= 0) {
                    return Err(Error::Config(format!("hooks.{kind}[{i}].timeout: must be greater than zero")));
                }
            }
        }
    }
    let types = namespace_types(spec);
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !private_namespace(spec, LinuxNamespaceType::Uts) {
        return Err(Error::Config("hostname: cannot set a hostname without a private UTS namespace".into()));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !private_namespace(spec, LinuxNamespaceType::Uts) {
        return Err(Error::Config("domainname: cannot set a domainname without a private UTS namespace".into()));
    }
    if !types.contains(&LinuxNamespaceType::Mount) {
        check_without_mount_namespace(spec)?;
    }
    if let Some(linux) = spec.linux() {
        validate_linux(spec, linux)?;
    }
    Ok(())
}

/// True when the container has a namespace of this type that is not the
/// runtime's own: a new one, or one joined by path that differs from hull's
/// (a pod's network namespace, say). Sysctls and the hostname scoped by such
/// a namespace change nothing of the host's, so they are allowed (as runc
/// allows them).
pub fn private_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(ns) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == typ))
    else {
        return false;
    };
    let Some(path) = ns.path() else { return true };
    let ours = format!("/proc/self/ns/{}", crate::linux::namespaces::proc_name(typ));
    match (std::fs::metadata(path), std::fs::metadata(ours)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        // A path that does not exist fails validation by itself, saying so.
        (Err(_), Ok(_)) => true,
        _ => false,
    }
}

/// True when the config asks for a new (not joined) namespace of this type.
pub fn new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ && n.path().is_none()))
}

/// Linux's limit on supplementary groups (setgroups(2) fails with EINVAL).
const NGROUPS_MAX: usize = 65536;

fn validate_process(process: &oci_spec::runtime::Process) -> Result<()> {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("process.args: must not be empty".into()));
    }
    if process.command_line().is_some() {
        return Err(Error::unsupported("process.commandLine", "it is for Windows"));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::Config(format!("process.cwd: {} is not an absolute path", process.cwd().display())));
    }
    for (i, e) in process.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(Error::Config(format!("process.env[{i}]: {e:?} is not of the form KEY=VALUE")));
        }
    }
    let groups = process.user().additional_gids().as_ref().map_or(0, |g| g.len());
    if groups > NGROUPS_MAX {
        return Err(Error::Config(format!("process.user.additionalGids: {groups} groups; the kernel allows at most {NGROUPS_MAX}")));
    }
    Ok(())
}

fn validate_linux(spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<()> {
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(Error::Config(format!("linux.namespaces[{i}]: duplicate namespace type {}", ns.typ())));
        }
        if let Some(p) = ns.path() {
            if !p.exists() {
                return Err(Error::Config(format!("linux.namespaces[{i}].path: {} does not exist", p.display())));
            }
        }
    }
    let user_ns = seen.contains(&LinuxNamespaceType::User);
    let has_maps =
        linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !user_ns {
        return Err(Error::Config("linux.uidMappings: id mappings need a user namespace".into()));
    }
    if new_namespace(spec, LinuxNamespaceType::User) && !has_maps {
        return Err(Error::Config("linux.uidMappings: a new user namespace needs uid and gid mappings".into()));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            crate::linux::sysctl::check_namespaced(key, spec).map_err(|why| Error::Config(format!("linux.sysctl: {key:?}: {why}")))?;
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        crate::linux::mount_options::propagation_flag(prop)
            .ok_or_else(|| Error::Config(format!("linux.rootfsPropagation: unknown value {prop:?}")))?;
    }
    if linux.intel_rdt().is_some() {
        let why = if std::path::Path::new("/sys/fs/resctrl/schemata").exists() {
            "Intel RDT (resctrl) is not implemented by hull"
        } else {
            "this host has no resctrl filesystem (Intel RDT/AMD PQoS) mounted at /sys/fs/resctrl"
        };
        return Err(Error::unsupported("linux.intelRdt", why));
    }
    crate::linux::netdev::check(spec)?;
    if linux.time_offsets().is_some() && !new_namespace(spec, LinuxNamespaceType::Time) {
        return Err(Error::Config("linux.timeOffsets: needs a new time namespace (linux.namespaces type \"time\" without a path)".into()));
    }
    if let Some(profile) = linux.seccomp() {
        // Compiled (not loaded) now, so a bad profile fails before anything
        // is created; the init compiles it again where it is loaded.
        crate::seccomp::compile(profile)?;
    }
    if let Some(resources) = linux.resources() {
        crate::cgroups::check_supported(resources)?;
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return Err(Error::Config(format!("linux.devices[{i}].path: {} must be an absolute path under /dev", d.path().display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_names_the_first_path_with_a_nul() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"annotations": {"a": "x\u0000"}, "process": {"args": ["sh", "-c\u0000"], "env": []}}"#).unwrap();
        assert_eq!(find_nul(&v, &["annotations"]).as_deref(), Some("process.args[1]"));
        assert_eq!(find_nul(&v, &[]).as_deref(), Some("annotations.a"));
        let key: serde_json::Value = serde_json::from_str(r#"{"annotations": {}, "k\u0000": 1}"#).unwrap();
        assert_eq!(find_nul(&key, &["annotations"]).as_deref(), Some("k\0"));
        let nested: serde_json::Value = serde_json::from_str(r#"{"x": [{"annotations": "\u0000"}]}"#).unwrap();
        assert_eq!(find_nul(&nested, &["annotations"]).as_deref(), Some("x[0].annotations"));
        let root: serde_json::Value = serde_json::from_str(r#""\u0000""#).unwrap();
        assert_eq!(find_nul(&root, &[]).as_deref(), Some("."));
        let clean: serde_json::Value = serde_json::from_str(r#"{"a": [1, "b", {"c": null}]}"#).unwrap();
        assert_eq!(find_nul(&clean, &[]), None);
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "mount"}]}
        })
    }

    fn check(v: serde_json::Value) -> Result<()> {
        validate(&parse_spec(v.to_string().as_bytes())?)
    }

    #[test]
    fn minimal_config_is_valid() {
        check(minimal()).unwrap();
    }

    #[test]
    fn parse_error_names_the_field() {
        let mut v = minimal();
        v["linux"]["namespaces"][0]["type"] = "bogus".into();
        let err = check(v).unwrap_err().to_string();
        assert!(err.contains("linux.namespaces[0].type"), "{err}");
    }

    #[test]
    fn the_path_naming_parsers_agree_with_serde_path_to_error() {
        use oci_spec::runtime::Process;
        let good = br#"{"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"}"#;
        let plain: Process = serde_json::from_slice(good).unwrap();
        assert_eq!(from_slice_naming_path::<Process>(good).unwrap(), plain);
        let value: serde_json::Value = serde_json::from_slice(good).unwrap();
        assert_eq!(from_value_naming_path::<Process>(value).unwrap(), plain);
        // Text after the value is not looked at, as before.
        let trailing = br#"{"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"} x"#;
        assert_eq!(from_slice_naming_path::<Process>(trailing).unwrap(), plain);
        let bad = br#"{"user": {"uid": "root", "gid": 0}, "args": ["sh"], "cwd": "/"}"#;
        let err = from_slice_naming_path::<Process>(bad).unwrap_err();
        assert_eq!(err.path().to_string(), "user.uid");
        let value: serde_json::Value = serde_json::from_slice(bad).unwrap();
        assert_eq!(from_value_naming_path::<Process>(value).unwrap_err().path().to_string(), "user.uid");
    }

    #[test]
    fn empty_args_are_refused() {
        let mut v = minimal();
        v["process"]["args"] = serde_json::json!([]);
        assert!(check(v).unwrap_err().to_string().contains("process.args"));
    }

    #[test]
    fn hostname_needs_uts_namespace() {
        let mut v = minimal();
        v["hostname"] = "x".into();
        assert!(check(v).unwrap_err().to_string().contains("hostname"));
    }

    #[test]
    fn hostname_with_a_missing_uts_path_names_the_path() {
        let mut v = minimal();
        v["hostname"] = "x".into();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "uts", "path": "/nonexistent/uts"}]);
        let err = check(v).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/uts") && err.contains("does not exist"), "{err}");
    }

    #[test]
    fn oci_version_of_another_major_is_refused() {
        for (version, ok) in [("1.0.0", true), ("1.3.0-rc.1", true), ("2.0.0", false), ("0.5", false), ("x", false)] {
            let mut v = minimal();
            v["ociVersion"] = version.into();
            assert_eq!(check(v).is_ok(), ok, "{version}");
        }
    }

    #[test]
    fn duplicate_namespace_is_refused() {
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "pid"}, {"type": "mount"}]);
        assert!(check(v).unwrap_err().to_string().contains("duplicate"));
    }

    #[test]
    fn seccomp_profiles_are_compiled_and_errors_name_the_field() {
        let mut v = minimal();
        v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "not_a_syscall"], "action": "SCMP_ACT_ERRNO"}]});
        check(v.clone()).unwrap();
        v["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_BOGUS".into();
        let err = check(v.clone()).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp.syscalls[0].action"), "{err}");
        v["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_ERRNO".into();
        v["linux"]["seccomp"]["syscalls"][0]["args"] = serde_json::json!([{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]);
        let err = check(v.clone()).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp.syscalls[0].args[0].index"), "{err}");
        v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]});
        let err = check(v).unwrap_err().to_string();
        assert!(err.contains("linux.seccomp.architectures[0]"), "{err}");
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let mut v = minimal();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "user"}, {"type": "mount"}]);
        assert!(check(v).unwrap_err().to_string().contains("uidMappings"));
    }
}
