//! CDI (Container Device Interface) devices: spec files (JSON or YAML) in
//! the spec directories describe devices by fully qualified name
//! (`vendor.com/class=name`) and the edits each one makes to a container's
//! OCI spec (env, device nodes, mounts, hooks, additional groups), plus
//! edits of the whole spec applied once with any of its devices.
//! [`resolve`] turns the names a container asks for into one [`CdiEdits`],
//! which `spec::cdi` applies. Spec files are written by device plugins and
//! drivers, not by hull: every file and list is bounded, and an edit hull
//! cannot apply is refused by name, never dropped.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Result, RuntimeError};

/// The default spec directories; a device in a later one replaces one of
/// the same name in an earlier one (the CDI's priority order).
pub const DEFAULT_SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

/// The largest spec file read, the most files looked at per directory,
/// and the most devices one container may ask for.
const MAX_SPEC_FILE: u64 = 1 << 20;
const MAX_SPEC_FILES: usize = 1024;
pub const MAX_DEVICES: usize = 128;
/// The most entries of each kind of edit one container gets.
const MAX_EDITS: usize = 4096;

/// The edits of a container's resolved devices, in the order they apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdiEdits {
    /// The devices, as asked for (their names, for messages and status).
    pub devices: Vec<String>,
    /// `NAME=VALUE`; a later one replaces the container's own of that name.
    pub env: Vec<String>,
    pub device_nodes: Vec<DeviceNode>,
    pub mounts: Vec<CdiMount>,
    pub hooks: Vec<CdiHook>,
    pub additional_gids: Vec<u32>,
}

/// A device node to make in the container and allow in its cgroup; type,
/// numbers and mode are taken from the host node when the spec omits them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNode {
    pub path: String,
    /// 'c' or 'b'.
    pub typ: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    /// Some of "rwm".
    pub permissions: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A bind mount of a host path (the only kind of CDI mount hull makes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdiMount {
    pub host_path: PathBuf,
    pub container_path: String,
    /// OCI mount options, with `bind` or `rbind` among them.
    pub options: Vec<String>,
}

/// An OCI hook at one of the OCI's points.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdiHook {
    /// prestart, createRuntime, createContainer, startContainer, poststart
    /// or poststop.
    pub hook_name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

// The spec file as the CDI defines it. Unknown fields land in `other` and
// are refused by name when an edit carrying them is applied.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFile {
    cdi_version: String,
    kind: String,
    #[serde(default)]
    devices: Vec<SpecDevice>,
    #[serde(default)]
    container_edits: Option<Edits>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecDevice {
    name: String,
    #[serde(default)]
    container_edits: Option<Edits>,
    #[serde(default)]
    #[allow(dead_code)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Edits {
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    device_nodes: Vec<SpecNode>,
    #[serde(default)]
    mounts: Vec<SpecMount>,
    #[serde(default)]
    hooks: Vec<SpecHook>,
    #[serde(default, rename = "additionalGIDs", alias = "additionalGids")]
    additional_gids: Vec<u32>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecNode {
    path: String,
    host_path: Option<PathBuf>,
    #[serde(rename = "type")]
    typ: Option<String>,
    major: Option<i64>,
    minor: Option<i64>,
    file_mode: Option<u32>,
    permissions: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecMount {
    host_path: PathBuf,
    container_path: String,
    #[serde(rename = "type")]
    typ: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecHook {
    hook_name: String,
    path: PathBuf,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    timeout: Option<i64>,
}

/// `vendor.com/class=name` split into kind (`vendor.com/class`) and name,
/// checked as the CDI spells them.
pub fn parse_name(qualified: &str) -> std::result::Result<(&str, &str), String> {
    let shown: String = qualified.chars().take(128).collect();
    let (kind, name) = qualified
        .split_once('=')
        .ok_or_else(|| format!("{shown:?} is not a CDI device name (vendor.com/class=name)"))?;
    check_kind(kind).map_err(|e| format!("{shown:?}: {e}"))?;
    check_name(name).map_err(|e| format!("{shown:?}: {e}"))?;
    Ok((kind, name))
}

fn check_kind(kind: &str) -> std::result::Result<(), String> {
    let (vendor, class) = kind.split_once('/').ok_or_else(|| format!("kind {kind:?} is not vendor/class"))?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if vendor.is_empty() || vendor.len() > 253 || !vendor.split('.').all(label_ok) {
        return Err(format!("vendor {vendor:?} is not a DNS subdomain"));
    }
    if class.len() > 63 || !segment_ok(class) {
        return Err(format!("class {class:?}: 1 to 63 of [A-Za-z0-9_.-], starting and ending alphanumeric"));
    }
    Ok(())
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > 253 || !segment_ok(name) {
        return Err(format!("device name {name:?}: [A-Za-z0-9_.:-], starting and ending alphanumeric"));
    }
    Ok(())
}

fn segment_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::invalid(msg)
}

/// A spec file's text: a regular file, at most [`MAX_SPEC_FILE`] bytes.
fn read_spec_file(path: &Path) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = Vec::new();
    f.take(MAX_SPEC_FILE + 1).read_to_end(&mut text).map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SPEC_FILE {
        return Err(format!("larger than {MAX_SPEC_FILE} bytes"));
    }
    Ok(text)
}

fn parse_spec(path: &Path, text: &[u8]) -> std::result::Result<SpecFile, String> {
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let spec: SpecFile = if yaml {
        serde_yaml_ng::from_slice(text).map_err(|e| e.to_string())?
    } else {
        serde_json::from_slice(text).map_err(|e| e.to_string())?
    };
    if spec.cdi_version.is_empty() {
        return Err("cdiVersion is empty".into());
    }
    check_kind(&spec.kind)?;
    if spec.devices.is_empty() {
        return Err("no devices".into());
    }
    for d in &spec.devices {
        check_name(&d.name)?;
    }
    Ok(spec)
}

/// The spec files of the directories, later directories last; within one,
/// by file name. A directory that does not exist has none.
fn spec_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else { continue };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "yaml" || e == "yml"))
            .take(MAX_SPEC_FILES)
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// The edits of `names` (fully qualified CDI device names) from the spec
/// files in `dirs`. A name that no spec file has, or that a broken spec
/// file of its kind may have had, is InvalidArgument naming it.
pub fn resolve(dirs: &[PathBuf], names: &[String]) -> Result<CdiEdits> {
    if names.len() > MAX_DEVICES {
        return Err(invalid(format!("cdi_devices: {} devices; at most {MAX_DEVICES}", names.len())));
    }
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for n in names {
        let (kind, name) = parse_name(n).map_err(|e| invalid(format!("cdi_devices: {e}")))?;
        if !wanted.iter().any(|w| w.0 == n) {
            wanted.push((n, kind, name));
        }
    }
    if wanted.is_empty() {
        return Ok(CdiEdits::default());
    }
    let kinds: BTreeSet<&str> = wanted.iter().map(|w| w.1).collect();
    // kind -> device name -> (spec file index, device edits); later files win.
    let mut specs: Vec<(PathBuf, SpecFile)> = Vec::new();
    let mut broken: Vec<String> = Vec::new();
    for path in spec_files(dirs) {
        match read_spec_file(&path).and_then(|t| parse_spec(&path, &t)) {
            Ok(s) if kinds.contains(s.kind.as_str()) => specs.push((path, s)),
            Ok(_) => {}
            Err(e) => broken.push(format!("{}: {e}", path.display())),
        }
    }
    let mut edits = CdiEdits::default();
    let mut specs_applied: BTreeSet<usize> = BTreeSet::new();
    for (qualified, kind, name) in &wanted {
        let found = specs
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, (_, s))| (s.kind == *kind).then(|| s.devices.iter().find(|d| d.name == *name).map(|d| (i, d))).flatten());
        let Some((i, dev)) = found else {
            let mut msg = format!("cdi_devices: {qualified:?}: no CDI spec in {} has this device", shown_dirs(dirs));
            if !broken.is_empty() {
                let shown: Vec<&str> = broken.iter().take(3).map(String::as_str).collect();
                msg.push_str(&format!(" (spec files not read: {})", shown.join("; ")));
            }
            return Err(invalid(msg));
        };
        let (path, spec) = &specs[i];
        if specs_applied.insert(i) {
            if let Some(e) = &spec.container_edits {
                add(&mut edits, e, &format!("{}: containerEdits", path.display()))?;
            }
        }
        if let Some(e) = &dev.container_edits {
            add(&mut edits, e, &format!("{}: devices[{name}].containerEdits", path.display()))?;
        }
        edits.devices.push(qualified.to_string());
    }
    Ok(edits)
}

fn shown_dirs(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A path inside the container: absolute, without `..`, no NUL.
fn container_path(field: &str, p: &str) -> Result<()> {
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) || p.contains('\0') {
        return Err(invalid(format!("{field} {p:?}: not an absolute path without ..")));
    }
    Ok(())
}

/// The mount options hull passes on for a CDI bind mount.
const MOUNT_OPTIONS: &[&str] = &[
    "bind",
    "rbind",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
    "relatime",
    "norelatime",
    "noatime",
    "strictatime",
    "nodiratime",
];

pub const HOOK_NAMES: &[&str] = &["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// Check one `containerEdits` and add it to `out`; `at` names it.
fn add(out: &mut CdiEdits, e: &Edits, at: &str) -> Result<()> {
    if let Some(k) = e.other.keys().next() {
        let what = if k == "intelRdt" { "Intel RDT is not supported" } else { "not a CDI edit hull applies" };
        return Err(invalid(format!("cdi_devices: {at}.{k}: {what}")));
    }
    let too_many = |n: usize, what: &str| {
        if n > MAX_EDITS {
            Err(invalid(format!("cdi_devices: {at}: more than {MAX_EDITS} {what}")))
        } else {
            Ok(())
        }
    };
    too_many(out.env.len() + e.env.len(), "env entries")?;
    too_many(out.device_nodes.len() + e.device_nodes.len(), "deviceNodes")?;
    too_many(out.mounts.len() + e.mounts.len(), "mounts")?;
    too_many(out.hooks.len() + e.hooks.len(), "hooks")?;
    too_many(out.additional_gids.len() + e.additional_gids.len(), "additionalGIDs")?;
    for (i, kv) in e.env.iter().enumerate() {
        match kv.split_once('=') {
            Some((k, _)) if !k.is_empty() && !kv.contains('\0') => out.env.push(kv.clone()),
            _ => return Err(invalid(format!("cdi_devices: {at}.env[{i}] {kv:?}: not NAME=VALUE"))),
        }
    }
    for (i, n) in e.device_nodes.iter().enumerate() {
        out.device_nodes.push(device_node(n, &format!("{at}.deviceNodes[{i}]"))?);
    }
    for (i, m) in e.mounts.iter().enumerate() {
        let field = format!("cdi_devices: {at}.mounts[{i}]");
        container_path(&format!("{field}.containerPath"), &m.container_path)?;
        if !m.host_path.is_absolute() || m.host_path.as_os_str().as_encoded_bytes().contains(&0) {
            return Err(invalid(format!("{field}.hostPath {}: not an absolute path", m.host_path.display())));
        }
        let bind = m.options.iter().any(|o| o == "bind" || o == "rbind");
        // The CDI: with bind or rbind in the options the type is a dummy.
        match m.typ.as_deref() {
            None | Some("") | Some("bind") | Some("none") => {}
            Some(_) if bind => {}
            Some(t) => return Err(invalid(format!("{field}.type {t:?}: only bind mounts are supported"))),
        }
        if let Some(o) = m.options.iter().find(|o| !MOUNT_OPTIONS.contains(&o.as_str())) {
            return Err(invalid(format!("{field}.options: {o:?} is not supported")));
        }
        let mut options = m.options.clone();
        if !bind {
            options.push("rbind".into());
        }
        out.mounts
            .push(CdiMount { host_path: m.host_path.clone(), container_path: m.container_path.clone(), options });
    }
    for (i, h) in e.hooks.iter().enumerate() {
        let field = format!("cdi_devices: {at}.hooks[{i}]");
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(invalid(format!("{field}.hookName {:?}: not an OCI hook ({})", h.hook_name, HOOK_NAMES.join(", "))));
        }
        if !h.path.is_absolute() {
            return Err(invalid(format!("{field}.path {}: not an absolute path", h.path.display())));
        }
        if let Some(t) = h.timeout.filter(|t| *t <= 0 || *t > 3600) {
            return Err(invalid(format!("{field}.timeout {t}: 1 to 3600 seconds")));
        }
        if h.args.len() > 256 || h.env.len() > 256 {
            return Err(invalid(format!("{field}: at most 256 args and 256 env entries")));
        }
        out.hooks.push(CdiHook {
            hook_name: h.hook_name.clone(),
            path: h.path.clone(),
            args: h.args.clone(),
            env: h.env.clone(),
            timeout: h.timeout,
        });
    }
    // The CDI: a 0 is ignored.
    out.additional_gids.extend(e.additional_gids.iter().filter(|g| **g != 0));
    Ok(())
}

/// A device node, its missing type/numbers/mode from the host node
/// (`hostPath`, else `path`), as the CDI's own library fills them in.
fn device_node(n: &SpecNode, at: &str) -> Result<DeviceNode> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let field = format!("cdi_devices: {at}");
    container_path(&format!("{field}.path"), &n.path)?;
    let host = n.host_path.clone().unwrap_or_else(|| PathBuf::from(&n.path));
    let given = match n.typ.as_deref() {
        None | Some("") => None,
        Some("c") | Some("u") => Some('c'),
        Some("b") => Some('b'),
        Some(t) => return Err(invalid(format!("{field}.type {t:?}: only c, u and b devices"))),
    };
    let (typ, major, minor, mode) = match (given, n.major, n.minor) {
        (Some(t), Some(ma), Some(mi)) => (t, ma, mi, n.file_mode),
        _ => {
            let meta = std::fs::metadata(&host).map_err(|e| invalid(format!("{field}: host device {}: {e}", host.display())))?;
            let ft = meta.file_type();
            let t = if ft.is_char_device() {
                'c'
            } else if ft.is_block_device() {
                'b'
            } else {
                return Err(invalid(format!("{field}: host path {} is not a device", host.display())));
            };
            if given.is_some_and(|g| g != t) {
                return Err(invalid(format!("{field}.type: the host device {} is not of that type", host.display())));
            }
            let rdev = meta.rdev();
            (
                t,
                n.major.unwrap_or(nix::sys::stat::major(rdev) as i64),
                n.minor.unwrap_or(nix::sys::stat::minor(rdev) as i64),
                n.file_mode.or(Some(meta.mode() & 0o7777)),
            )
        }
    };
    if !(0..=0xfff).contains(&major) || !(0..=0xfffff).contains(&minor) {
        return Err(invalid(format!("{field}: device number {major}:{minor} out of range")));
    }
    let permissions = n.permissions.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "rwm".into());
    if permissions.len() > 3 || !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(invalid(format!("{field}.permissions {permissions:?}: some of r, w, m")));
    }
    if let Some(m) = mode.filter(|m| *m > 0o7777) {
        return Err(invalid(format!("{field}.fileMode {m:o}: permission bits only")));
    }
    Ok(DeviceNode { path: n.path.clone(), typ, major, minor, file_mode: mode, permissions, uid: n.uid, gid: n.gid })
}

/// The device names of the kubelet's CDI annotations (`cdi.k8s.io/<key>`,
/// values comma-separated), in key order.
pub fn annotation_devices(annotations: &BTreeMap<String, String>) -> Vec<String> {
    annotations
        .iter()
        .filter(|(k, _)| k.starts_with("cdi.k8s.io/"))
        .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_name("vendor.com/gpu=0").unwrap(), ("vendor.com/gpu", "0"));
        assert_eq!(parse_name("nvidia.com/gpu=GPU-a1:b_2").unwrap().1, "GPU-a1:b_2");
        for bad in ["gpu=0", "vendor.com/gpu", "vendor.com/gpu=", "-v.com/gpu=0", "v.com/g/x=0", "v.com/gpu=a b", "v.com/gpu=-a"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_json_and_yaml_with_priority_and_refuses_by_name() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write(
            a.path(),
            "v.json",
            r#"{"cdiVersion":"0.6.0","kind":"example.com/dev","containerEdits":{"env":["SPEC=1"]},
               "devices":[{"name":"a","containerEdits":{"env":["A=old"]}},
                          {"name":"n","containerEdits":{"deviceNodes":[{"path":"/dev/x","type":"c","major":1,"minor":3}],
                                                         "mounts":[{"hostPath":"/srv","containerPath":"/srv","options":["ro","bind"]}],
                                                         "hooks":[{"hookName":"createContainer","path":"/bin/true"}],
                                                         "additionalGIDs":[0,44]}}]}"#,
        );
        write(b.path(), "v.yaml", "cdiVersion: 0.6.0\nkind: example.com/dev\ndevices:\n- name: a\n  containerEdits:\n    env: [A=new]\n");
        write(b.path(), "broken.json", "{not json");
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        let e = resolve(&dirs, &["example.com/dev=a".into()]).unwrap();
        assert_eq!(e.env, ["A=new"], "the later directory's device wins; its spec has no spec-level edits");
        let e = resolve(&dirs, &["example.com/dev=n".into(), "example.com/dev=n".into()]).unwrap();
        assert_eq!(e.devices, ["example.com/dev=n"]);
        assert_eq!(e.env, ["SPEC=1"]);
        assert_eq!(
            e.device_nodes[0],
            DeviceNode { path: "/dev/x".into(), typ: 'c', major: 1, minor: 3, permissions: "rwm".into(), ..Default::default() }
        );
        assert_eq!(e.mounts[0].options, ["ro", "bind"]);
        assert_eq!(e.hooks[0].hook_name, "createContainer");
        assert_eq!(e.additional_gids, [44]);
        let err = resolve(&dirs, &["example.com/dev=zz".into()]).unwrap_err().to_string();
        assert!(err.contains("\"example.com/dev=zz\"") && err.contains("broken.json"), "{err}");
        assert!(resolve(&dirs, &["nope".into()]).unwrap_err().to_string().contains("not a CDI device name"));

        for (edits, needle) in [
            (r#"{"intelRdt":{"closID":"x"}}"#, "intelRdt: Intel RDT"),
            (r#"{"netDevices":[]}"#, "netDevices"),
            (r#"{"mounts":[{"hostPath":"/a","containerPath":"/b","type":"tmpfs"}]}"#, "only bind"),
            (r#"{"mounts":[{"hostPath":"/a","containerPath":"../b"}]}"#, "containerPath"),
            (r#"{"mounts":[{"hostPath":"/a","containerPath":"/b","options":["bind","X-weird"]}]}"#, "X-weird"),
            (r#"{"hooks":[{"hookName":"whenever","path":"/bin/true"}]}"#, "hookName"),
            (r#"{"hooks":[{"hookName":"poststop","path":"/bin/true","timeout":0}]}"#, "timeout"),
            (r#"{"deviceNodes":[{"path":"/dev/y","hostPath":"/nonexistent-dev"}]}"#, "nonexistent-dev"),
            (r#"{"deviceNodes":[{"path":"/dev/y","type":"p","major":1,"minor":1}]}"#, "type"),
            (r#"{"deviceNodes":[{"path":"/dev/y","type":"c","major":1,"minor":3,"permissions":"rwx"}]}"#, "permissions"),
            (r#"{"env":["NOEQUALS"]}"#, "NAME=VALUE"),
        ] {
            let d = tempfile::tempdir().unwrap();
            write(
                d.path(),
                "x.json",
                &format!(r#"{{"cdiVersion":"0.6.0","kind":"example.com/bad","devices":[{{"name":"d","containerEdits":{edits}}}]}}"#),
            );
            let err = resolve(&[d.path().to_path_buf()], &["example.com/bad=d".into()]).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains("x.json"), "{edits}: {err}");
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("big.json"), vec![b' '; (MAX_SPEC_FILE + 1) as usize]).unwrap();
        let err = resolve(&[d.path().to_path_buf()], &["example.com/big=d".into()]).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        let many: Vec<String> = (0..=MAX_DEVICES).map(|i| format!("example.com/dev=d{i}")).collect();
        assert!(resolve(&dirs, &many).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn annotations_name_devices() {
        let a = BTreeMap::from([
            ("cdi.k8s.io/plugin_a".to_string(), "v.com/c=a, v.com/c=b".to_string()),
            ("other".to_string(), "v.com/c=z".to_string()),
        ]);
        assert_eq!(annotation_devices(&a), ["v.com/c=a", "v.com/c=b"]);
    }
}
