//! From a Pod's container to an OCI bundle: config.json (process, user,
//! capabilities, namespaces joined from the sandbox, volumes, limits) and a
//! writable rootfs (an overlay over the image directory).
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::{json, Value};

use super::sandbox::ns_path;
use super::store::{Holder, PodDir};
use super::validate::parse_quantity;
use super::volumes::{self, oci_mount, HostVolume};
use crate::error::{Error, Result, SysContext};

/// containerd's default capability set for containers.
const DEFAULT_CAPS: &[&str] = &[
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

/// The kernel's (and kubelet's) largest cpu.shares.
const MAX_SHARES: u64 = 262_144;

pub struct BundleContext<'a> {
    pub pod: &'a Pod,
    pub image_root: &'a Path,
    pub dir: &'a PodDir,
    pub holder: Option<&'a Holder>,
    pub volumes: &'a [HostVolume],
    pub cgroup_parent: &'a str,
}

fn spec_of(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().expect("validated")
}

/// Where a container's image comes from: hull's image store (a reference
/// such as `busybox:latest`), or a local rootfs directory named by absolute
/// path (or `dir:PATH`), which has no image config.
// One value per container start: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ImageSource {
    Dir(PathBuf),
    Store { store: crate::image::store::Store, record: crate::image::store::ImageRecord, config: crate::image::manifest::ImageConfig },
}

impl ImageSource {
    pub fn config(&self) -> Option<&crate::image::manifest::ImageConfig> {
        match self {
            ImageSource::Dir(_) => None,
            ImageSource::Store { config, .. } => Some(config),
        }
    }
}

pub fn resolve_image(image: &str, field: &str, image_root: &Path) -> Result<ImageSource> {
    Ok(match crate::runtime::rootfs::resolve(image, &format!("{field}.image"), image_root)? {
        crate::runtime::rootfs::Source::Dir(d) => ImageSource::Dir(d),
        crate::runtime::rootfs::Source::Store(i) => {
            let i = *i;
            ImageSource::Store { store: i.store, record: i.record, config: i.config }
        }
    })
}

/// Make the bundle of one attempt of a container; returns its directory.
pub fn prepare(ctx: &BundleContext, c: &Container, field: &str, attempt_dir: &Path, host_mounts: &mut Vec<PathBuf>) -> Result<PathBuf> {
    let image = resolve_image(c.image.as_deref().unwrap_or(""), field, ctx.image_root)?;
    let bundle = attempt_dir.join("bundle");
    std::fs::create_dir_all(&bundle).sys_context(|| format!("create {}", bundle.display()))?;
    let read_only_root = c.security_context.as_ref().and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
    let root = attempt_dir.join("rootfs");
    let rootfs = match &image {
        ImageSource::Dir(dir) if read_only_root => dir.clone(),
        ImageSource::Dir(dir) => {
            mount_overlay(dir, attempt_dir, &root)?;
            host_mounts.push(root.clone());
            root.clone()
        }
        ImageSource::Store { store, record, .. } => {
            crate::image::rootfs::mount_rootfs(store, record, &root, attempt_dir)?;
            host_mounts.push(root.clone());
            root.clone()
        }
    };
    let config = config(ctx, c, field, &rootfs, read_only_root, image.config())
        .and_then(|config| stage_volume_mounts(ctx, c, field, attempt_dir, config, host_mounts));
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            unmount_attempt(ctx.image_root, attempt_dir, host_mounts);
            return Err(e);
        }
    };
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&config).unwrap_or_default())
        .sys_context(|| "write config.json".into())?;
    Ok(bundle)
}

/// Mount each volumeMount whose source may change under hull (a subPath, a
/// hostPath) from an fd resolved once, onto `<attempt>/volumes/<i>`, and
/// point the container's mount at that: the runtime's later lookup is then
/// of a path only hull can change.
fn stage_volume_mounts(
    ctx: &BundleContext,
    c: &Container,
    field: &str,
    attempt_dir: &Path,
    mut config: Value,
    host_mounts: &mut Vec<PathBuf>,
) -> Result<Value> {
    let vms = c.volume_mounts.as_deref().unwrap_or(&[]);
    let mounts = config["mounts"].as_array_mut().ok_or_else(|| Error::Init("config has no mounts".into()))?;
    // The volumeMounts are the last mounts of the config, in order.
    let first = mounts
        .len()
        .checked_sub(vms.len())
        .ok_or_else(|| Error::Init("volume mounts missing from the config".into()))?;
    for (i, vm) in vms.iter().enumerate() {
        if !volumes::needs_staging(vm, ctx.volumes) {
            continue;
        }
        let target = attempt_dir.join("volumes").join(i.to_string());
        volumes::stage_mount(vm, ctx.volumes, &format!("{field}.volumeMounts[{i}]"), &target)?;
        host_mounts.push(target.clone());
        mounts[first + i]["source"] = json!(target);
    }
    Ok(config)
}

/// Undo an attempt's host mounts: its staged volume sources, then its
/// rootfs (and the rootfs's image-store lease).
pub fn unmount_attempt(image_root: &Path, attempt_dir: &Path, host_mounts: &mut Vec<PathBuf>) {
    let staged = attempt_dir.join("volumes");
    let mine: Vec<PathBuf> = host_mounts.iter().filter(|p| p.starts_with(&staged)).cloned().collect();
    volumes::unmount_all(&mine);
    let root = attempt_dir.join("rootfs");
    if host_mounts.contains(&root) {
        unmount_rootfs(image_root, &root);
    }
    host_mounts.retain(|p| !p.starts_with(&staged) && *p != root);
}

/// Unmount a container rootfs (and drop its image-store lease, if any).
pub fn unmount_rootfs(image_root: &Path, target: &Path) {
    match crate::image::store::Store::open(image_root) {
        Ok(store) if image_root.exists() => {
            let _ = crate::image::rootfs::unmount_rootfs(&store, target);
        }
        _ => {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn mount_overlay(lower: &Path, attempt_dir: &Path, target: &Path) -> Result<()> {
    let upper = attempt_dir.join("upper");
    let work = attempt_dir.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(d).sys_context(|| format!("create {}", d.display()))?;
    }
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
    nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str()))
        .sys_context(|| format!("mount overlay rootfs at {}", target.display()))
}

/// The OCI config for one container of the pod.
pub fn config(
    ctx: &BundleContext,
    c: &Container,
    field: &str,
    rootfs: &Path,
    read_only_root: bool,
    image: Option<&crate::image::manifest::ImageConfig>,
) -> Result<Value> {
    let pod_spec = spec_of(ctx.pod);
    let mut spec = crate::oci::spec_template::default_spec(false);
    let command = c.command.clone().unwrap_or_default();
    let cargs = c.args.clone().unwrap_or_default();
    let args: Vec<String> = match image {
        Some(img) => {
            crate::image::bundle::process_args(img, &command, &cargs).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?
        }
        None => command.iter().chain(&cargs).cloned().collect(),
    };
    if args.is_empty() {
        return Err(Error::InvalidArgument(format!("{field}: command is required (a local rootfs has no image config to take it from)")));
    }
    let mut extra = Vec::new();
    if let Some(h) = pod_hostname(ctx.pod) {
        extra.push(format!("HOSTNAME={h}"));
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.value_from.is_some() {
            return Err(Error::unsupported(format!("{field}.env[{i}].valueFrom"), "there is no API server"));
        }
        extra.push(format!("{}={}", e.name, e.value.clone().unwrap_or_default()));
    }
    let env = match image {
        Some(img) => crate::image::bundle::process_env(img, &extra),
        None => {
            let mut env = vec![crate::image::bundle::DEFAULT_PATH.to_string()];
            env.extend(extra);
            env
        }
    };
    let sc = c.security_context.as_ref();
    let psc = pod_spec.security_context.as_ref();
    // The image's User, unless the pod says otherwise.
    let (image_uid, image_gid) = match image.and_then(|i| i.config.user.as_deref()).filter(|u| !u.is_empty()) {
        Some(u) => {
            let (uid, gid, _) = crate::image::bundle::resolve_user(u, rootfs)
                .map_err(|e| Error::InvalidArgument(format!("{field}: image user {u:?}: {e}")))?;
            (uid as i64, gid as i64)
        }
        None => (0, 0),
    };
    let uid = sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)).unwrap_or(image_uid);
    let gid = sc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group)).unwrap_or(image_gid);
    let non_root = sc.and_then(|s| s.run_as_non_root).or(psc.and_then(|s| s.run_as_non_root)).unwrap_or(false);
    if non_root && uid == 0 {
        return Err(Error::InvalidArgument(format!("{field}: runAsNonRoot is set but the container would run as uid 0")));
    }
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = capabilities(c, privileged, field)?;
    let process = &mut spec["process"];
    process["terminal"] = json!(false);
    process["args"] = json!(args);
    process["env"] = json!(env);
    let image_cwd = image.and_then(|i| i.config.working_dir.clone()).filter(|w| !w.is_empty());
    process["cwd"] = json!(c.working_dir.clone().or(image_cwd).unwrap_or_else(|| "/".into()));
    process["user"] = json!({"uid": uid, "gid": gid,
        "additionalGids": psc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default()});
    process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    process["noNewPrivileges"] = json!(sc.and_then(|s| s.allow_privilege_escalation) == Some(false));
    process.as_object_mut().expect("object").remove("rlimits");
    spec["root"] = json!({"path": rootfs, "readonly": read_only_root});
    spec.as_object_mut().expect("object").remove("hostname");

    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    let holder_ns = |typ: &str| -> Result<Value> {
        let h = ctx.holder.ok_or_else(|| Error::Init("pod sandbox holder is missing".into()))?;
        Ok(json!({"type": typ, "path": ns_path(h, match typ { "network" => "net", t => t })}))
    };
    if !pod_spec.host_network.unwrap_or(false) {
        namespaces.push(holder_ns("network")?);
        namespaces.push(holder_ns("uts")?);
    }
    if !pod_spec.host_ipc.unwrap_or(false) {
        namespaces.push(holder_ns("ipc")?);
    }
    if pod_spec.share_process_namespace.unwrap_or(false) {
        namespaces.push(holder_ns("pid")?);
    } else if !pod_spec.host_pid.unwrap_or(false) {
        namespaces.push(json!({"type": "pid"}));
    }
    let linux = &mut spec["linux"];
    linux["namespaces"] = json!(namespaces);
    linux["cgroupsPath"] = json!(format!("{}/{}", ctx.cgroup_parent, c.name));
    if let Some(r) = resources(c, field)? {
        linux["resources"] = r;
    }
    if let Some(sysctls) = psc.and_then(|s| s.sysctls.as_ref()) {
        linux["sysctl"] = json!(sysctls
            .iter()
            .map(|s| (s.name.clone(), s.value.clone()))
            .collect::<std::collections::BTreeMap<_, _>>());
    }
    if privileged {
        let l = linux.as_object_mut().expect("object");
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
        let res = l.entry("resources").or_insert_with(|| json!({}));
        res["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }

    let mounts = spec["mounts"].as_array_mut().expect("array");
    if privileged {
        for m in mounts.iter_mut() {
            if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                if let Some(opts) = m["options"].as_array_mut() {
                    opts.retain(|o| o != "ro");
                }
            }
        }
    }
    let etc = ctx.dir.etc();
    for (file, dest) in [("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf")] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": etc.join(file),
            "options": ["rbind", "rprivate", if read_only_root { "ro" } else { "rw" }]}));
    }
    for (i, vm) in c.volume_mounts.iter().flatten().enumerate() {
        mounts.push(oci_mount(vm, ctx.volumes, &format!("{field}.volumeMounts[{i}]"))?);
    }
    spec["annotations"] = json!({
        "io.kubernetes.pod.name": ctx.pod.metadata.name,
        "io.kubernetes.container.name": c.name,
    });
    Ok(spec)
}

fn capabilities(c: &Container, privileged: bool, field: &str) -> Result<Vec<String>> {
    if privileged {
        let mut all: Vec<String> = caps::all().into_iter().map(|c| c.to_string()).collect();
        all.sort();
        return Ok(all);
    }
    let mut set: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let norm = |s: &str| {
        let up = s.to_ascii_uppercase();
        if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    if let Some(cs) = c.security_context.as_ref().and_then(|s| s.capabilities.as_ref()) {
        for d in cs.drop.iter().flatten() {
            if d.eq_ignore_ascii_case("ALL") {
                set.clear();
            } else {
                let n = norm(d);
                set.retain(|c| *c != n);
            }
        }
        for a in cs.add.iter().flatten() {
            if a.eq_ignore_ascii_case("ALL") {
                return capabilities(c, true, field);
            }
            let n = norm(a);
            if n.parse::<caps::Capability>().is_err() {
                return Err(Error::InvalidArgument(format!("{field}.securityContext.capabilities.add: unknown capability {a:?}")));
            }
            if !set.contains(&n) {
                set.push(n);
            }
        }
    }
    Ok(set)
}

/// limits.cpu → CFS quota over a 100 ms period; requests.cpu → shares;
/// limits.memory → memory limit (requests.memory is a scheduling hint).
pub fn resources(c: &Container, field: &str) -> Result<Option<Value>> {
    let Some(r) = c.resources.as_ref() else { return Ok(None) };
    let get = |map: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               key: &str,
               which: &str|
     -> Result<Option<f64>> {
        map.as_ref()
            .and_then(|m| m.get(key))
            .map(|q| parse_quantity(&q.0).map_err(|e| Error::InvalidArgument(format!("{field}.resources.{which}.{key}: {e}"))))
            .transpose()
    };
    for which in [("limits", &r.limits), ("requests", &r.requests)] {
        for key in which.1.iter().flat_map(|m| m.keys()) {
            if key != "cpu" && key != "memory" {
                return Err(Error::unsupported(format!("{field}.resources.{}.{key}", which.0), "only cpu and memory"));
            }
        }
    }
    let mut out = json!({});
    let cpu_limit = get(&r.limits, "cpu", "limits")?;
    let cpu_request = get(&r.requests, "cpu", "requests")?.or(cpu_limit);
    let mem_limit = get(&r.limits, "memory", "limits")?;
    if cpu_limit.is_some() || cpu_request.is_some() {
        let mut cpu = json!({});
        if let Some(l) = cpu_limit {
            // Within int64 millicores (checked when parsed); the quota of a
            // limit beyond any machine saturates, as f64 -> i64 does.
            cpu["quota"] = json!(((l * 100_000.0).round() as i64).max(1000));
            cpu["period"] = json!(100_000);
        }
        if let Some(req) = cpu_request {
            // kubelet's bounds for cpu.shares.
            cpu["shares"] = json!(((req * 1024.0).round() as u64).clamp(2, MAX_SHARES));
        }
        out["cpu"] = cpu;
    }
    if let Some(m) = mem_limit {
        out["memory"] = json!({"limit": m as i64});
    }
    Ok((out.as_object().is_some_and(|o| !o.is_empty())).then_some(out))
}

/// The pod's own cgroup limits, as kubelet sets them on the pod cgroup:
/// the sum of the containers' memory limits and CPU quotas when every
/// container has one, and the sum of their CPU shares.
pub fn pod_resources(pod: &Pod) -> Result<Option<Value>> {
    let spec = spec_of(pod);
    let mut memory: Option<i64> = Some(0);
    let mut quota: Option<i64> = Some(0);
    let mut shares: u64 = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        let r = resources(c, &format!("spec.containers[{i}]"))?.unwrap_or(json!({}));
        let field = |what: &str| format!("spec.containers[{i}].resources.limits.{what}: the pod's total limit is out of range");
        memory = match memory.zip(r["memory"]["limit"].as_i64()) {
            Some((a, b)) => Some(a.checked_add(b).ok_or_else(|| Error::InvalidArgument(field("memory")))?),
            None => None,
        };
        quota = match quota.zip(r["cpu"]["quota"].as_i64()) {
            Some((a, b)) => Some(a.checked_add(b).ok_or_else(|| Error::InvalidArgument(field("cpu")))?),
            None => None,
        };
        shares = shares.saturating_add(r["cpu"]["shares"].as_u64().unwrap_or(2));
    }
    let mut out = json!({"cpu": {"shares": shares.clamp(2, MAX_SHARES)}});
    if let Some(m) = memory.filter(|m| *m > 0) {
        out["memory"] = json!({"limit": m});
    }
    if let Some(q) = quota.filter(|q| *q > 0) {
        out["cpu"]["quota"] = json!(q);
        out["cpu"]["period"] = json!(100_000);
    }
    Ok(Some(out))
}

pub fn pod_hostname(pod: &Pod) -> Option<String> {
    let spec = spec_of(pod);
    spec.hostname.clone().or_else(|| pod.metadata.name.clone())
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod.
pub fn write_etc_files(pod: &Pod, dir: &PodDir, ips: &[String]) -> Result<()> {
    let spec = spec_of(pod);
    let etc = dir.etc();
    std::fs::create_dir_all(&etc).sys_context(|| format!("create {}", etc.display()))?;
    let host = if spec.host_network.unwrap_or(false) {
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
    } else {
        pod_hostname(pod).unwrap_or_default()
    };
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{host}\n"));
    }
    for a in spec.host_aliases.iter().flatten() {
        hosts.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.clone().unwrap_or_default().join(" ")));
    }
    std::fs::write(etc.join("hosts"), hosts).sys_context(|| "write hosts".into())?;
    std::fs::write(etc.join("hostname"), format!("{host}\n")).sys_context(|| "write hostname".into())?;
    let resolv = match (&spec.dns_config, spec.dns_policy.as_deref()) {
        (_, Some("None")) | (Some(_), _) => {
            let dc = spec.dns_config.clone().unwrap_or_default();
            let mut s = String::new();
            for n in dc.nameservers.iter().flatten() {
                s.push_str(&format!("nameserver {n}\n"));
            }
            if let Some(se) = dc.searches.filter(|v| !v.is_empty()) {
                s.push_str(&format!("search {}\n", se.join(" ")));
            }
            let opts: Vec<String> = dc
                .options
                .iter()
                .flatten()
                .map(|o| match &o.value {
                    Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                    None => o.name.clone().unwrap_or_default(),
                })
                .collect();
            if !opts.is_empty() {
                s.push_str(&format!("options {}\n", opts.join(" ")));
            }
            s
        }
        // Default and ClusterFirst (there is no cluster DNS): the host's.
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(etc.join("resolv.conf"), resolv).sys_context(|| "write resolv.conf".into())
}
