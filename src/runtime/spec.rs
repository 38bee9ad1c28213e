//! A container's OCI spec, built as an `oci_spec::runtime::Spec` value by
//! small steps, each doing one thing (process, user, capabilities,
//! namespaces, mounts, devices, resources, paths, seccomp) and each tested
//! on its own without root. [`build`] runs them in order.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities as CapSet, Capability, LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit,
    LinuxNamespace, LinuxNamespaceType, LinuxResources as OciResources, Mount as OciMount, Spec,
};

use super::config::{
    Capabilities, ContainerConfig, Device, LinuxResources, Mount, MountPropagation, NamespaceMode, NamespaceOptions, SecurityProfile,
};
use super::error::{ErrorKind, Result, RuntimeError};
use crate::image::manifest::ImageConfig;

/// containerd's default capability set for containers.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What the steps need besides the container's config.
pub struct SpecInputs<'a> {
    pub config: &'a ContainerConfig,
    /// The image's config (None for a local rootfs directory).
    pub image: Option<&'a ImageConfig>,
    /// The rootfs on the host (for user name lookups and `root.path`).
    pub rootfs: &'a Path,
    /// Namespace files of the sandbox holder by type ("net", "ipc", "uts",
    /// "pid"); absent when the holder does not own that namespace.
    pub holder_ns: &'a HashMap<String, PathBuf>,
    /// The PID namespace file of a `Target` container.
    pub target_pid_ns: Option<PathBuf>,
    /// The sandbox's hosts, hostname and resolv.conf, when bound in.
    pub etc_dir: Option<&'a Path>,
    /// The container's cgroup (cgroupfs path).
    pub cgroups_path: String,
    /// The sandbox-level uid/gid/groups used when the container sets none.
    pub pod_user: (Option<i64>, Option<i64>, &'a [i64]),
    pub annotations: HashMap<String, String>,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::new(ErrorKind::InvalidArgument, format!("container {field}: {why}"))
}

/// The base: hull's default spec (runc's), without a terminal, rlimits or a
/// hostname of its own (the UTS namespace is the sandbox's).
pub fn base() -> Spec {
    let mut spec: Spec = serde_json::from_value(crate::oci::spec_template::default_spec(false)).expect("the template is a valid spec");
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_terminal(Some(false));
    p.set_rlimits(None);
    spec.set_process(Some(p));
    spec.set_hostname(None);
    spec
}

/// args (image Entrypoint/Cmd under the Kubernetes rules), env, cwd.
pub fn process(spec: &mut Spec, c: &ContainerConfig, image: Option<&ImageConfig>) -> Result<()> {
    let args = match image {
        Some(img) => crate::image::bundle::process_args(img, &c.command, &c.args).map_err(|e| invalid("command", e))?,
        None => c.command.iter().chain(&c.args).cloned().collect(),
    };
    if args.is_empty() {
        return Err(invalid("command", "is required (a local rootfs has no image config to take it from)"));
    }
    let mut extra = Vec::new();
    for (i, (k, v)) in c.envs.iter().enumerate() {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(invalid(&format!("envs[{i}]"), format!("bad variable name {k:?}")));
        }
        extra.push(format!("{k}={v}"));
    }
    let env = match image {
        Some(img) => crate::image::bundle::process_env(img, &extra),
        None => {
            let mut env = vec![crate::image::bundle::DEFAULT_PATH.to_string()];
            for e in extra {
                let key = e.split('=').next().unwrap_or("").to_string();
                env.retain(|old| old.split('=').next() != Some(key.as_str()));
                env.push(e);
            }
            env
        }
    };
    let image_cwd = image.and_then(|i| i.config.working_dir.clone()).filter(|w| !w.is_empty());
    let cwd = if c.working_dir.is_empty() { image_cwd.unwrap_or_else(|| "/".into()) } else { c.working_dir.clone() };
    if !cwd.starts_with('/') {
        return Err(invalid("working_dir", format!("{cwd:?} is not absolute")));
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(args));
    p.set_env(Some(env));
    p.set_cwd(PathBuf::from(cwd));
    // The monitor receives the pty master (it holds it for attaching).
    p.set_terminal(Some(c.tty));
    spec.set_process(Some(p));
    Ok(())
}

fn id_u32(field: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| invalid(field, format!("{v} is not a valid id")))
}

/// uid/gid/groups: the container's, else the pod's, else the image's User
/// (a name looked up in the rootfs's /etc/passwd and /etc/group).
pub fn user(
    spec: &mut Spec,
    c: &ContainerConfig,
    image: Option<&ImageConfig>,
    rootfs: &Path,
    pod: (Option<i64>, Option<i64>, &[i64]),
) -> Result<()> {
    let sc = &c.security_context;
    let lookup =
        |u: &str, field: &str| crate::image::bundle::resolve_user(u, rootfs).map_err(|e| invalid(field, format!("user {u:?}: {e}")));
    let (mut uid, mut gid, mut groups) = (0u32, 0u32, Vec::new());
    if let Some(name) = sc.run_as_username.as_deref().filter(|n| !n.is_empty()) {
        (uid, gid, groups) = lookup(name, "security_context.run_as_username")?;
    } else if let Some(u) = sc.run_as_user.or(pod.0) {
        uid = id_u32("security_context.run_as_user", u)?;
        // A numeric user keeps the image's group, as the kubelet does.
        if let Some(img_user) = image.and_then(|i| i.config.user.as_deref()).filter(|u| !u.is_empty()) {
            if let Some((_, g)) = img_user.split_once(':') {
                if let Ok(g) = g.parse() {
                    gid = g;
                }
            }
        }
    } else if let Some(img_user) = image.and_then(|i| i.config.user.as_deref()).filter(|u| !u.is_empty()) {
        (uid, gid, groups) = lookup(img_user, "image user")?;
    }
    if let Some(g) = sc.run_as_group.or(pod.1) {
        gid = id_u32("security_context.run_as_group", g)?;
    }
    let extra = if sc.supplemental_groups.is_empty() { pod.2 } else { &sc.supplemental_groups[..] };
    for g in extra {
        let g = id_u32("security_context.supplemental_groups", *g)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    if sc.run_as_non_root && uid == 0 {
        return Err(invalid("security_context.run_as_non_root", "is set but the container would run as uid 0"));
    }
    let mut p = spec.process().clone().unwrap_or_default();
    let mut u = p.user().clone();
    u.set_uid(uid);
    u.set_gid(gid);
    u.set_additional_gids(if groups.is_empty() { None } else { Some(groups) });
    p.set_user(u);
    spec.set_process(Some(p));
    Ok(())
}

fn cap_name(s: &str) -> String {
    let up = s.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set: containerd's defaults with `drop` then `add`
/// applied ("ALL" allowed in both), or every capability when privileged.
/// "Every" is what this process may hand on, its bounding set, as
/// containerd's `cap.Current()`: a daemon without one (CAP_SYS_RESOURCE in
/// some VMs) could not start a privileged container at all otherwise.
pub fn capabilities(spec: &mut Spec, caps: &Capabilities, privileged: bool) -> Result<()> {
    let all = || {
        caps::read(None, caps::CapSet::Bounding)
            .unwrap_or_else(|_| caps::all())
            .into_iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
    };
    let mut set: Vec<String> = if privileged { all() } else { DEFAULT_CAPS.iter().map(|s| s.to_string()).collect() };
    if !privileged {
        for d in &caps.drop {
            if d.eq_ignore_ascii_case("ALL") {
                set.clear();
            } else {
                let n = cap_name(d);
                set.retain(|c| *c != n);
            }
        }
        for a in &caps.add {
            if a.eq_ignore_ascii_case("ALL") {
                set = all();
                continue;
            }
            let n = cap_name(a);
            if n.parse::<caps::Capability>().is_err() {
                return Err(invalid("security_context.capabilities.add", format!("unknown capability {a:?}")));
            }
            if !set.contains(&n) {
                set.push(n);
            }
        }
    }
    set.sort();
    let parsed: CapSet = set
        .iter()
        .map(|n| {
            serde_json::from_value::<Capability>(serde_json::Value::String(n.clone()))
                .map_err(|_| invalid("security_context.capabilities", format!("{n} is not known to the OCI types")))
        })
        .collect::<Result<_>>()?;
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(parsed.clone()));
    lc.set_effective(Some(parsed.clone()));
    lc.set_permitted(Some(parsed));
    lc.set_inheritable(None);
    lc.set_ambient(None);
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_capabilities(Some(lc));
    spec.set_process(Some(p));
    Ok(())
}

pub fn no_new_privileges(spec: &mut Spec, on: bool) {
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_no_new_privileges(Some(on));
    spec.set_process(Some(p));
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path.map(Path::to_path_buf));
    n
}

/// Mount and cgroup namespaces of its own; network (with UTS), IPC and PID
/// as the namespace options say: the sandbox holder's, the host's, its
/// own, or (PID only) a target container's.
pub fn namespaces(spec: &mut Spec, opts: &NamespaceOptions, holder: &HashMap<String, PathBuf>, target_pid: Option<&Path>) -> Result<()> {
    let mut list = vec![ns(LinuxNamespaceType::Mount, None), ns(LinuxNamespaceType::Cgroup, None)];
    let from_holder = |key: &str, field: &str| {
        holder.get(key).map(PathBuf::as_path).ok_or_else(|| {
            RuntimeError::precondition(format!(
                "container namespace_options.{field} is POD but the sandbox has no {key} namespace of its own"
            ))
        })
    };
    match opts.network {
        // A sandbox on the node's network (and UTS) has none of its own to
        // join: its POD-network containers share the node's, as containerd
        // runs them (the sandbox's namespaces are the host's there).
        NamespaceMode::Pod if !holder.contains_key("net") && !holder.contains_key("uts") => {}
        NamespaceMode::Pod => {
            list.push(ns(LinuxNamespaceType::Network, Some(from_holder("net", "network")?)));
            list.push(ns(LinuxNamespaceType::Uts, Some(from_holder("uts", "network")?)));
        }
        NamespaceMode::Node => {}
        NamespaceMode::Container | NamespaceMode::Target => {
            return Err(RuntimeError::unimplemented(format!("container namespace_options.network {:?}", opts.network), "only POD or NODE"));
        }
    }
    match opts.ipc {
        NamespaceMode::Pod => list.push(ns(LinuxNamespaceType::Ipc, Some(from_holder("ipc", "ipc")?))),
        NamespaceMode::Container => list.push(ns(LinuxNamespaceType::Ipc, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => return Err(invalid("namespace_options.ipc", "TARGET is for the pid namespace only")),
    }
    match opts.pid {
        NamespaceMode::Pod => list.push(ns(LinuxNamespaceType::Pid, Some(from_holder("pid", "pid")?))),
        NamespaceMode::Container => list.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => {
            let p = target_pid.ok_or_else(|| invalid("namespace_options.target_id", "TARGET pid mode needs a running target container"))?;
            list.push(ns(LinuxNamespaceType::Pid, Some(p)));
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(list));
    spec.set_linux(Some(linux));
    Ok(())
}

fn bind(dest: &str, source: &Path, extra: &[&str]) -> OciMount {
    let mut m = OciMount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(extra.iter().map(|s| s.to_string()).collect()));
    m
}

/// Replace any mount at the same destination (a later mount wins, as
/// containerd lets CRI mounts override the defaults).
fn push_mount(mounts: &mut Vec<OciMount>, m: OciMount) {
    mounts.retain(|old| old.destination() != m.destination());
    mounts.push(m);
}

/// The sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf.
pub fn etc_files(spec: &mut Spec, etc_dir: &Path, readonly: bool) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (file, dest) in [("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf")] {
        push_mount(&mut mounts, bind(dest, &etc_dir.join(file), &["rbind", "rprivate", if readonly { "ro" } else { "rw" }]));
    }
    spec.set_mounts(Some(mounts));
}

/// The config's mounts: binds with their propagation and read-only flag,
/// or fresh tmpfs mounts.
pub fn mounts(spec: &mut Spec, list: &[Mount]) -> Result<()> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (i, m) in list.iter().enumerate() {
        let field = format!("mounts[{i}]");
        if !m.container_path.starts_with('/') || m.container_path.split('/').any(|c| c == "..") {
            return Err(invalid(&field, format!("container_path {:?} must be absolute, without ..", m.container_path)));
        }
        if m.tmpfs {
            let mut t = OciMount::default();
            t.set_destination(PathBuf::from(&m.container_path));
            t.set_typ(Some("tmpfs".into()));
            t.set_source(Some("tmpfs".into()));
            let mut opts = vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
            if m.readonly {
                opts.push("ro".into());
            }
            t.set_options(Some(opts));
            push_mount(&mut mounts, t);
            continue;
        }
        if !m.host_path.is_absolute() {
            return Err(invalid(&field, format!("host_path {} is not absolute", m.host_path.display())));
        }
        if std::fs::symlink_metadata(&m.host_path).is_err() {
            return Err(invalid(&field, format!("host_path {} does not exist", m.host_path.display())));
        }
        let prop = match m.propagation {
            MountPropagation::Private => "rprivate",
            MountPropagation::HostToContainer => "rslave",
            MountPropagation::Bidirectional => "rshared",
        };
        let mut opts = vec!["rbind", prop, if m.readonly { "ro" } else { "rw" }];
        if m.recursive_readonly {
            // mount_setattr(AT_RECURSIVE) on the whole bound tree.
            opts.push("rro");
        }
        if m.image.is_some() {
            // KEP-4639: an image volume is read-only and noexec.
            opts.push("noexec");
        }
        push_mount(&mut mounts, bind(&m.container_path, &m.host_path, &opts));
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Host devices made in the container, with a cgroup rule allowing each.
pub fn devices(spec: &mut Spec, list: &[Device]) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut devs = linux.devices().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    for (i, d) in list.iter().enumerate() {
        let field = format!("devices[{i}]");
        if !d.container_path.starts_with('/') {
            return Err(invalid(&field, format!("container_path {:?} is not absolute", d.container_path)));
        }
        let perms = if d.permissions.is_empty() { "rwm" } else { d.permissions.as_str() };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) || perms.len() > 3 {
            return Err(invalid(&field, format!("permissions {perms:?}: use r, w and m")));
        }
        let meta = std::fs::metadata(&d.host_path).map_err(|e| invalid(&field, format!("host_path {}: {e}", d.host_path.display())))?;
        let ft = meta.file_type();
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            return Err(invalid(&field, format!("host_path {} is not a device", d.host_path.display())));
        };
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev) as i64, nix::sys::stat::minor(rdev) as i64);
        let mut dev = LinuxDevice::default();
        dev.set_path(PathBuf::from(&d.container_path));
        dev.set_typ(typ);
        dev.set_major(major);
        dev.set_minor(minor);
        dev.set_file_mode(Some(meta.mode() & 0o7777));
        dev.set_uid(Some(0));
        dev.set_gid(Some(0));
        devs.push(dev);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(major));
        rule.set_minor(Some(minor));
        rule.set_access(Some(perms.to_string()));
        rules.push(rule);
    }
    res.set_devices(Some(rules));
    linux.set_resources(Some(res));
    linux.set_devices(if devs.is_empty() { None } else { Some(devs) });
    spec.set_linux(Some(linux));
    Ok(())
}

/// hull's [`LinuxResources`] as OCI resources (0 and empty are "unset").
pub fn oci_resources(r: &LinuxResources, base: OciResources) -> Result<OciResources> {
    let mut out = base;
    let mut cpu = out.cpu().clone().unwrap_or_default();
    let mut set_cpu = false;
    if r.cpu_shares != 0 {
        cpu.set_shares(Some(u64::try_from(r.cpu_shares).map_err(|_| invalid("resources.cpu_shares", "is negative"))?));
        set_cpu = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        set_cpu = true;
    }
    if r.cpu_period != 0 {
        cpu.set_period(Some(u64::try_from(r.cpu_period).map_err(|_| invalid("resources.cpu_period", "is negative"))?));
        set_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        set_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        set_cpu = true;
    }
    if set_cpu {
        out.set_cpu(Some(cpu));
    }
    if r.memory_limit_in_bytes != 0 || r.memory_swap_limit_in_bytes != 0 {
        let mut mem = out.memory().unwrap_or_default();
        if r.memory_limit_in_bytes != 0 {
            mem.set_limit(Some(r.memory_limit_in_bytes));
        }
        if r.memory_swap_limit_in_bytes != 0 {
            mem.set_swap(Some(r.memory_swap_limit_in_bytes));
        }
        out.set_memory(Some(mem));
    }
    if !r.hugepage_limits.is_empty() {
        let mut list = Vec::new();
        for h in &r.hugepage_limits {
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(h.page_size.clone());
            l.set_limit(i64::try_from(h.limit).map_err(|_| invalid("resources.hugepage_limits", "limit too large"))?);
            list.push(l);
        }
        out.set_hugepage_limits(Some(list));
    }
    if !r.unified.is_empty() {
        out.set_unified(Some(r.unified.iter().map(|(k, v)| (k.clone(), v.clone())).collect()));
    }
    Ok(out)
}

/// The container's limits and its OOM score.
pub fn resources(spec: &mut Spec, r: &LinuxResources) -> Result<()> {
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid("resources.oom_score_adj", format!("{} is outside -1000..1000", r.oom_score_adj)));
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    let res = oci_resources(r, linux.resources().clone().unwrap_or_default())?;
    linux.set_resources(Some(res));
    spec.set_linux(Some(linux));
    if r.oom_score_adj != 0 {
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_oom_score_adj(Some(r.oom_score_adj as i32));
        spec.set_process(Some(p));
    }
    Ok(())
}

/// A container's CDI edits (resolved and checked by `cdi::resolve`): env
/// (a name given again replaces the container's own, as the CDI's
/// library does), device nodes made and allowed in the device cgroup,
/// bind mounts (replacing one at the same destination; their host paths
/// are hull's staged copies, see `mounts::stage_config`), hooks,
/// additional groups.
pub fn cdi(spec: &mut Spec, e: &super::cdi::CdiEdits) -> Result<()> {
    use oci_spec::runtime::{Hook, Hooks};
    if e.devices.is_empty() {
        return Ok(());
    }
    let mut p = spec.process().clone().unwrap_or_default();
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &e.env {
        let name = kv.split('=').next().unwrap_or_default();
        env.retain(|old| old.split('=').next() != Some(name));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if !e.additional_gids.is_empty() {
        let mut user = p.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for g in &e.additional_gids {
            if !gids.contains(g) {
                gids.push(*g);
            }
        }
        user.set_additional_gids(Some(gids));
        p.set_user(user);
    }
    spec.set_process(Some(p));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut devs = linux.devices().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    for n in &e.device_nodes {
        let typ = if n.typ == 'b' { LinuxDeviceType::B } else { LinuxDeviceType::C };
        let mut dev = LinuxDevice::default();
        dev.set_path(PathBuf::from(&n.path));
        dev.set_typ(typ);
        dev.set_major(n.major);
        dev.set_minor(n.minor);
        dev.set_file_mode(n.file_mode);
        dev.set_uid(n.uid.or(Some(0)));
        dev.set_gid(n.gid.or(Some(0)));
        devs.retain(|d| d.path() != dev.path());
        devs.push(dev);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(Some(n.major));
        rule.set_minor(Some(n.minor));
        rule.set_access(Some(n.permissions.clone()));
        rules.push(rule);
    }
    res.set_devices(Some(rules));
    linux.set_resources(Some(res));
    linux.set_devices(if devs.is_empty() { None } else { Some(devs) });
    spec.set_linux(Some(linux));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &e.mounts {
        let opts: Vec<&str> = m.options.iter().map(String::as_str).collect();
        push_mount(&mut mounts, bind(&m.container_path, &m.host_path, &opts));
    }
    spec.set_mounts(Some(mounts));

    if !e.hooks.is_empty() {
        let mut hooks: Hooks = spec.hooks().clone().unwrap_or_default();
        // In the order of `cdi::HOOK_NAMES`.
        #[allow(deprecated)]
        let mut lists = [
            hooks.prestart().clone(),
            hooks.create_runtime().clone(),
            hooks.create_container().clone(),
            hooks.start_container().clone(),
            hooks.poststart().clone(),
            hooks.poststop().clone(),
        ];
        for h in &e.hooks {
            let Some(at) = super::cdi::HOOK_NAMES.iter().position(|n| *n == h.hook_name) else {
                return Err(invalid("cdi hooks", format!("{:?} is not an OCI hook", h.hook_name)));
            };
            let mut hook = Hook::default();
            hook.set_path(h.path.clone());
            hook.set_args(Some(h.args.clone()).filter(|a| !a.is_empty()));
            hook.set_env(Some(h.env.clone()).filter(|e| !e.is_empty()));
            hook.set_timeout(h.timeout);
            lists[at].get_or_insert_with(Vec::new).push(hook);
        }
        let [prestart, create_runtime, create_container, start_container, poststart, poststop] = lists;
        #[allow(deprecated)]
        hooks.set_prestart(prestart);
        hooks.set_create_runtime(create_runtime);
        hooks.set_create_container(create_container);
        hooks.set_start_container(start_container);
        hooks.set_poststart(poststart);
        hooks.set_poststop(poststop);
        spec.set_hooks(Some(hooks));
    }
    Ok(())
}

/// Masked and read-only paths: given lists replace the defaults; a
/// privileged container has none.
pub fn paths(spec: &mut Spec, masked: Option<&[String]>, readonly: Option<&[String]>, privileged: bool) -> Result<()> {
    for (field, list) in [("masked_paths", masked), ("readonly_paths", readonly)] {
        for p in list.into_iter().flatten() {
            if !p.starts_with('/') {
                return Err(invalid(&format!("security_context.{field}"), format!("{p:?} is not absolute")));
            }
        }
    }
    let mut linux = spec.linux().clone().unwrap_or_default();
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        if let Some(m) = masked {
            linux.set_masked_paths(Some(m.to_vec()));
        }
        if let Some(r) = readonly {
            linux.set_readonly_paths(Some(r.to_vec()));
        }
    }
    spec.set_linux(Some(linux));
    Ok(())
}

/// A privileged container: every device allowed, /sys and the cgroup fs
/// writable.
pub fn privileged(spec: &mut Spec) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut all = LinuxDeviceCgroup::default();
    all.set_allow(true);
    all.set_access(Some("rwm".into()));
    res.set_devices(Some(vec![all]));
    linux.set_resources(Some(res));
    spec.set_linux(Some(linux));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        if m.destination() == Path::new("/sys") || m.destination() == Path::new("/sys/fs/cgroup") {
            let opts: Vec<String> = m.options().clone().unwrap_or_default().into_iter().filter(|o| o != "ro").collect();
            m.set_options(Some(opts));
        }
    }
    spec.set_mounts(Some(mounts));
}

/// The seccomp filter: none, hull's default for the container's bounding
/// capabilities, or an OCI seccomp JSON file.
pub fn seccomp(spec: &mut Spec, profile: &SecurityProfile, privileged: bool) -> Result<()> {
    let filter = match profile {
        SecurityProfile::Unconfined => None,
        // As containerd: a privileged container runs unconfined unless a
        // profile file is named.
        SecurityProfile::RuntimeDefault if privileged => None,
        SecurityProfile::RuntimeDefault => {
            let caps = spec
                .process()
                .as_ref()
                .and_then(|p| p.capabilities().as_ref())
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default();
            Some(crate::seccomp::runtime_default(&caps))
        }
        SecurityProfile::Localhost(path) => Some(read_seccomp_profile(path).map_err(|e| invalid("security_context.seccomp", e))?),
    };
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(filter);
    spec.set_linux(Some(linux));
    Ok(())
}

/// The most a Localhost seccomp profile file may hold (Docker's default
/// profile is under 30 KiB of JSON).
pub const SECCOMP_PROFILE_MAX: u64 = 1 << 20;

/// A Localhost seccomp profile: an OCI `LinuxSeccomp` JSON file on the
/// host, named by the kubelet but written by whoever can write there, so
/// read once, as a regular file (a FIFO or device would block or never
/// end), at most [`SECCOMP_PROFILE_MAX`] bytes.
pub fn read_seccomp_profile(path: &Path) -> std::result::Result<oci_spec::runtime::LinuxSeccomp, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    if !path.is_absolute() {
        return Err(format!("{shown}: a Localhost profile is an absolute path"));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mut text = Vec::new();
    f.take(SECCOMP_PROFILE_MAX + 1).read_to_end(&mut text).map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > SECCOMP_PROFILE_MAX {
        return Err(format!("{shown}: larger than {SECCOMP_PROFILE_MAX} bytes"));
    }
    serde_json::from_slice(&text).map_err(|e| format!("{shown}: not an OCI seccomp profile: {e}"))
}

pub fn root(spec: &mut Spec, rootfs: &Path, readonly: bool) {
    let mut r = spec.root().clone().unwrap_or_default();
    r.set_path(rootfs.to_path_buf());
    r.set_readonly(Some(readonly));
    spec.set_root(Some(r));
}

pub fn cgroups_path(spec: &mut Spec, path: &str) {
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(path)));
    spec.set_linux(Some(linux));
}

pub fn annotations(spec: &mut Spec, a: HashMap<String, String>) {
    spec.set_annotations(if a.is_empty() { None } else { Some(a) });
}

/// Every step, in order; then the OCI layer's own validation.
pub fn build(inp: &SpecInputs) -> Result<Spec> {
    let c = inp.config;
    let sc = &c.security_context;
    let mut spec = base();
    process(&mut spec, c, inp.image)?;
    user(&mut spec, c, inp.image, inp.rootfs, inp.pod_user)?;
    capabilities(&mut spec, &sc.capabilities, sc.privileged)?;
    no_new_privileges(&mut spec, sc.no_new_privs);
    namespaces(&mut spec, &sc.namespace_options, inp.holder_ns, inp.target_pid_ns.as_deref())?;
    if let Some(etc) = inp.etc_dir {
        etc_files(&mut spec, etc, sc.readonly_rootfs);
    }
    mounts(&mut spec, &c.mounts)?;
    if sc.privileged {
        privileged(&mut spec);
    }
    devices(&mut spec, &c.devices)?;
    cdi(&mut spec, &c.cdi)?;
    if let Some(r) = &c.resources {
        resources(&mut spec, r)?;
    }
    paths(&mut spec, sc.masked_paths.as_deref(), sc.readonly_paths.as_deref(), sc.privileged)?;
    seccomp(&mut spec, &sc.seccomp, sc.privileged)?;
    root(&mut spec, inp.rootfs, sc.readonly_rootfs);
    cgroups_path(&mut spec, &inp.cgroups_path);
    annotations(&mut spec, inp.annotations.clone());
    crate::oci::config::validate(&spec).map_err(|e| RuntimeError::from(e).context("container"))?;
    Ok(spec)
}

#[cfg(test)]
mod tests;
