//! Pods without a kubelet: `hull pod run pod.yaml` and friends.
//!
//! A pod is a sandbox (a holder process owning the shared namespaces, see
//! [`sandbox`]), volumes ([`volumes`]), and containers made from the
//! manifest ([`bundle`]), each run by a monitor process, all driven by a
//! per-pod supervisor process ([`supervisor`]) that outlives the command.
pub mod backoff;
pub mod bundle;
pub mod manifest;
pub mod names;
pub mod probe;
pub mod sandbox;
pub mod store;
pub mod supervisor;
pub mod validate;
pub mod volumes;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result, SysContext};
use crate::monitor::exit::ExitRecord;
use crate::oci::state::StateRoot;
use store::{ContainerState, PodDir, PodRecord, PodStore};

/// Options of `hull pod run`.
pub struct RunOptions {
    pub manifest: String,
    /// Kubelet's restart back-off base (10 s); smaller for tests.
    pub backoff_base: Duration,
    /// How long to wait for the containers to be running.
    pub wait: Duration,
    /// Where the CNI network config and plugins are.
    pub cni: crate::network::CniOptions,
    /// hull's image store (`image:` references other than local paths).
    pub image_root: PathBuf,
    /// `-n/--namespace`; None: the manifest's `metadata.namespace`, else
    /// `default`.
    pub namespace: Option<String>,
}

/// Read a manifest from a file, or stdin for "-".
pub fn read_manifest(path: &str) -> Result<String> {
    let mut text = String::new();
    if path == "-" {
        std::io::stdin().read_to_string(&mut text).sys_context(|| "read manifest from stdin".into())?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("{path}: {e}")))?;
    }
    Ok(text)
}

fn new_uid() -> String {
    let mut b = [0u8; 16];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// Undo a pod's host-side resources; used by `rm` and by a failed `run`.
/// Only the containers the record names are deleted (each container's
/// current attempt, and the next one a supervisor may have been starting
/// when it died), never every id that merely starts like the pod's.
fn teardown(root: &StateRoot, store: &PodStore, rec: &PodRecord) {
    for c in &rec.containers {
        let ids = [
            c.container_id.clone(),
            Some(supervisor::container_id(&rec.key(), &c.name, c.attempt)),
            Some(supervisor::container_id(&rec.key(), &c.name, c.attempt + 1)),
        ];
        for id in ids.into_iter().flatten() {
            if root.load(&id).is_ok() {
                let _ = crate::oci::lifecycle::delete(root, &id, true);
            }
        }
    }
    // Container rootfs overlays (with their image-store leases), then volumes.
    let (rootfs, others): (Vec<PathBuf>, Vec<PathBuf>) = rec.host_mounts.iter().cloned().partition(|m| m.ends_with("rootfs"));
    for m in rootfs.iter().rev() {
        bundle::unmount_rootfs(&rec.image_root, m);
    }
    volumes::unmount_all(&others);
    release_network(store, rec);
    if let Some(h) = &rec.holder {
        sandbox::stop_holder(h);
    }
    remove_cgroup_parent(&rec.cgroup_parent);
    let _ = std::fs::remove_dir_all(&store.dir(&rec.key()).path);
}

/// CNI DEL and the netns pin (idempotent: DEL of what is gone succeeds).
fn release_network(store: &PodStore, rec: &PodRecord) {
    if let Some(att) = rec.network.clone().and_then(|v| serde_json::from_value::<crate::network::Attachment>(v).ok()) {
        if let Err(e) = att.del() {
            log::warn!("pod {}: CNI DEL: {e}", rec.name);
        }
    }
    let pinned = store.dir(&rec.key()).path.join("netns");
    if pinned.exists() {
        let _ = crate::network::netns::remove_netns(&pinned);
    }
}

/// The pod's cgroup parent directories, in every hierarchy.
/// rmdir every cgroup below `dir`, deepest first (cgroup directories hold
/// only control files, which rmdir takes along; one with processes fails
/// and stays).
fn remove_empty_children(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_children(&e.path());
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

fn remove_cgroup_parent(parent: &str) {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let bases: Vec<PathBuf> = match crate::cgroups::detect_layout() {
        crate::cgroups::Layout::V2 => vec![PathBuf::from("/sys/fs/cgroup")],
        crate::cgroups::Layout::V1 => std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|e| e.path()).collect(),
    };
    for base in bases {
        // What is left below it first (a container cgroup whose OCI delete
        // did not run: empty ones go, ones with processes stay), then the
        // pod's own, then its parents up to the hierarchy root.
        remove_empty_children(&base.join(rel));
        let mut p = base.join(rel);
        while p != base {
            if std::fs::remove_dir(&p).is_err() && p.exists() {
                break;
            }
            match p.parent() {
                Some(q) => p = q.to_path_buf(),
                None => break,
            }
        }
    }
}

pub fn run(root: &StateRoot, opts: &RunOptions) -> Result<PodRecord> {
    let text = read_manifest(&opts.manifest)?;
    let m = manifest::parse(&text)?;
    for w in &m.warnings {
        eprintln!("hull: warning: {w}");
    }
    supervisor::check_names(&m.pod)?;
    let pod = m.pod;
    let name = pod.metadata.name.clone().expect("validated");
    let namespace = match (&opts.namespace, &pod.metadata.namespace) {
        (Some(flag), Some(own)) if flag != own => {
            return Err(Error::InvalidArgument(format!("metadata.namespace {own:?} does not match --namespace {flag:?}")))
        }
        (Some(ns), _) | (None, Some(ns)) => ns.clone(),
        (None, None) => "default".to_string(),
    };
    names::check_label("namespace", &namespace)?;
    let key = store::pod_key(&namespace, &name);
    let store = PodStore::new(&root.path);
    let dir = store.claim(&key)?;
    let uid = pod.metadata.uid.clone().unwrap_or_else(new_uid);
    let mut rec = PodRecord {
        name: name.clone(),
        namespace,
        uid: uid.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        phase: "Pending".into(),
        manifest: pod.clone(),
        holder: None,
        supervisor_pid: 0,
        backoff_base_ms: u64::try_from(opts.backoff_base.as_millis()).unwrap_or(u64::MAX),
        ips: Vec::new(),
        network: None,
        host_mounts: Vec::new(),
        cgroup_parent: format!("/hull-pod-{uid}"),
        image_root: opts.image_root.clone(),
        containers: supervisor::initial_statuses(&pod),
    };
    match set_up(root, &store, &dir, &mut rec, opts) {
        Ok(()) => {}
        Err(e) => {
            teardown(root, &store, &rec);
            return Err(e);
        }
    }
    wait_started(&store, &key, opts.wait)
}

fn set_up(root: &StateRoot, store: &PodStore, dir: &PodDir, rec: &mut PodRecord, opts: &RunOptions) -> Result<()> {
    let spec = rec.manifest.spec.clone().expect("validated");
    let host_net = spec.host_network.unwrap_or(false);
    rec.holder = Some(sandbox::start_holder(
        Path::new("/proc/self/exe"),
        &sandbox::SandboxSpec {
            hostname: bundle::pod_hostname(&rec.manifest),
            network: !host_net,
            uts: !host_net,
            ipc: !spec.host_ipc.unwrap_or(false),
            pid: spec.share_process_namespace.unwrap_or(false),
        },
    )?);
    if !host_net {
        attach_network(store, rec, &opts.cni)?;
    }
    bundle::write_etc_files(&rec.manifest, dir, &rec.ips)?;
    make_pod_cgroup(rec)?;
    let vols = volumes::prepare(dir, spec.volumes.as_deref().unwrap_or(&[]), &mut rec.host_mounts)?;
    // Build and validate every container's config now, so that a bad
    // manifest fails here rather than in the supervisor.
    let ctx = bundle::BundleContext {
        pod: &rec.manifest,
        image_root: &rec.image_root,
        dir,
        holder: rec.holder.as_ref(),
        volumes: &vols,
        cgroup_parent: &rec.cgroup_parent,
    };
    for (kind, list) in [("initContainers", spec.init_containers.clone().unwrap_or_default()), ("containers", spec.containers.clone())] {
        for (i, c) in list.iter().enumerate() {
            let field = format!("spec.{kind}[{i}]");
            probe::specs_of(c).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
            let image = bundle::resolve_image(c.image.as_deref().unwrap_or(""), &field, &rec.image_root)?;
            // An image's rootfs is not mounted yet: its User (a name to look
            // up in its /etc/passwd) is resolved when the container starts.
            let (probe_root, image_config) = match &image {
                bundle::ImageSource::Dir(d) => (d.clone(), None),
                bundle::ImageSource::Store { config, .. } => {
                    let mut c = config.clone();
                    c.config.user = None;
                    (dir.path.clone(), Some(c))
                }
            };
            let config = bundle::config(&ctx, c, &field, &probe_root, true, image_config.as_ref())?;
            let spec = crate::oci::config::parse_spec(config.to_string().as_bytes())
                .map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
            crate::oci::config::validate(&spec).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
        }
    }
    store.save(rec)?;
    spawn_supervisor(root, dir, &rec.key(), opts.backoff_base)?;
    Ok(())
}

/// The pod cgroup (`/hull-pod-<uid>`), parent of its containers' cgroups,
/// with the pod-level limits. Removed by `teardown` after the containers'.
fn make_pod_cgroup(rec: &PodRecord) -> Result<()> {
    let parent = Path::new(&rec.cgroup_parent);
    let (dir, leaf) = (parent.parent().unwrap_or(Path::new("/")), parent.file_name().and_then(|n| n.to_str()).unwrap_or("pod"));
    let cg = crate::cgroups::Cgroup::create(Some(&dir.join(leaf)), leaf)?;
    if let Some(r) = bundle::pod_resources(&rec.manifest)? {
        let res: oci_spec::runtime::LinuxResources =
            serde_json::from_value(r).map_err(|e| Error::InvalidArgument(format!("pod resources: {e}")))?;
        if let Err(e) = cg.apply_resources(&res) {
            let _ = cg.remove();
            return Err(e);
        }
    }
    Ok(())
}

/// Container ports with a hostPort, as CNI port mappings.
fn host_ports(pod: &k8s_openapi::api::core::v1::Pod) -> impl Iterator<Item = crate::network::PortMapping> + '_ {
    let spec = pod.spec.as_ref().expect("validated");
    spec.containers.iter().flat_map(|c| c.ports.iter().flatten()).filter_map(|p| {
        let host_port = u16::try_from(p.host_port?).ok()?;
        Some(crate::network::PortMapping {
            host_port,
            container_port: u16::try_from(p.container_port).unwrap_or(0),
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
    })
}

/// CNI ADD for the pod's network namespace (the holder's). Without any CNI
/// config the pod keeps only its loopback, which is said on stderr, and a
/// hostPort (which needs the portmap plugin) is an error.
fn attach_network(store: &PodStore, rec: &mut PodRecord, cni: &crate::network::CniOptions) -> Result<()> {
    let config = match crate::network::CniConfig::discover(cni) {
        Ok(c) => c,
        Err(crate::network::NetworkError::NoConfig { dir }) => {
            if let Some(p) = host_ports(&rec.manifest).next() {
                return Err(Error::InvalidArgument(format!(
                    "hostPort {}: needs a CNI network with the portmap plugin, and {} has no network config",
                    p.host_port,
                    dir.display()
                )));
            }
            eprintln!("hull: warning: no CNI network config in {}: the pod has only its loopback", dir.display());
            return Ok(());
        }
        Err(e) => return Err(Error::InvalidArgument(format!("pod network: {e}"))),
    };
    if let Some(p) = host_ports(&rec.manifest).next().filter(|_| !config.maps_ports()) {
        return Err(Error::InvalidArgument(format!(
            "hostPort {}: the CNI network {:?} ({}) has no plugin with the portMappings capability (portmap): the port would not be mapped",
            p.host_port,
            config.list.name,
            config.source.display()
        )));
    }
    let holder = rec.holder.expect("started before the network");
    // CNI gets a pinned path, not /proc/<holder>/ns/net: should the holder
    // die and its pid be reused, a DEL must not reach someone else's netns.
    let netns = crate::network::netns::pin_netns(Path::new(&sandbox::ns_path(&holder, "net")), &store.dir(&rec.key()).path, "netns")
        .map_err(|e| Error::InvalidArgument(format!("pod network: {e}")))?;
    let mut att = config.attachment(&rec.uid, &netns, "eth0");
    att.port_mappings = host_ports(&rec.manifest).collect();
    att.args = vec![
        ("K8S_POD_NAMESPACE".into(), rec.namespace.clone()),
        ("K8S_POD_NAME".into(), rec.name.clone()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), rec.uid.clone()),
        ("K8S_POD_UID".into(), rec.uid.clone()),
    ];
    // Recorded before ADD: a crash in between still leaves enough for DEL.
    rec.network = serde_json::to_value(&att).ok();
    store.save(rec)?;
    let result = att
        .add()
        .map_err(|e| Error::InvalidArgument(format!("pod network (CNI {}): {e}", att.config.name)))?;
    rec.ips = result.pod_ips().iter().map(|ip| ip.to_string()).collect();
    rec.network = serde_json::to_value(&att).ok();
    Ok(())
}

fn spawn_supervisor(root: &StateRoot, dir: &PodDir, name: &str, backoff: Duration) -> Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path.join("supervisor.log"))
        .sys_context(|| "open supervisor log".into())?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(&root.path)
        .arg("--log")
        .arg(dir.path.join("supervisor.log"))
        .args(["pod", "supervise", "--backoff-base-ms"])
        .arg(backoff.as_millis().to_string())
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().sys_context(|| "dup log".into())?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().sys_context(|| "start pod supervisor".into())?;
    Ok(())
}

/// Wait (bounded) until every app container runs, or the pod ended.
fn wait_started(store: &PodStore, name: &str, limit: Duration) -> Result<PodRecord> {
    let start = Instant::now();
    loop {
        let rec = store.load(name)?;
        let app = rec.containers.iter().filter(|c| !c.init);
        let all_running = app.clone().all(|c| c.state == ContainerState::Running);
        let failed_start = rec.containers.iter().any(|c| c.reason == "StartError");
        if all_running || failed_start || matches!(rec.phase.as_str(), "Succeeded" | "Failed" | "Stopped") || start.elapsed() > limit {
            return Ok(rec);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Entry point of the detached supervisor process.
pub fn supervise(root: &StateRoot, name: &str, backoff_base: Duration) -> Result<()> {
    nix::sys::prctl::set_child_subreaper(false).ok();
    let store = PodStore::new(&root.path);
    let dir = store.dir(name);
    // One supervisor per pod: a second one (two commands that both found
    // the first dead) leaves at once.
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.supervisor_lock())
        .sys_context(|| "open supervisor lock".into())?;
    let _lock = match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(()),
        Err((_, e)) => return Err(Error::sys("lock the supervisor lock", e)),
    };
    let mut rec = store.load(name)?;
    rec.supervisor_pid = std::process::id() as i32;
    let spec = rec.manifest.spec.clone().expect("validated");
    // Volumes were made by `run`; only their host paths are needed here.
    let vols = volumes::existing(&dir, spec.volumes.as_deref().unwrap_or(&[]));
    let mut sup =
        supervisor::Supervisor { root, store: &store, dir, rec, volumes: vols, backoff_base, hull: PathBuf::from("/proc/self/exe") };
    sup.run()
}

/// The current state of a pod's containers, with exits read from the
/// monitors' records (they are right even if the supervisor died). A pod
/// whose supervisor died before the pod ended gets a new one, which takes
/// over from the record (running containers are adopted, restarts and
/// probes resume).
pub fn status(root: &StateRoot, name: &str) -> Result<PodRecord> {
    let store = PodStore::new(&root.path);
    let mut rec = store.load(name)?;
    let dir = store.dir(name);
    let ended = matches!(rec.phase.as_str(), "Succeeded" | "Failed" | "Stopped");
    if rec.supervisor_pid > 0 && !ended && !supervisor_alive(&rec) && !dir.stop_request().exists() {
        log::warn!("pod {name}: its supervisor is gone; starting a new one");
        spawn_supervisor(root, &dir, name, Duration::from_millis(rec.backoff_base_ms))?;
    }
    for c in &mut rec.containers {
        if c.state == ContainerState::Running {
            if let Some(exit) = ExitRecord::load(&dir.attempt(&c.name, c.attempt).join("exit.json")) {
                c.state = ContainerState::Terminated;
                c.reason = exit.reason.clone();
                c.ready = false;
                c.last_exit = Some(exit);
            }
        }
    }
    Ok(rec)
}

pub fn supervisor_alive(rec: &PodRecord) -> bool {
    rec.supervisor_pid > 0 && crate::oci::state::process_start_time(rec.supervisor_pid).is_some()
}

/// Ask the supervisor to stop the pod's containers; wait (bounded).
pub fn stop(root: &StateRoot, name: &str) -> Result<()> {
    let store = PodStore::new(&root.path);
    let rec = store.load(name)?;
    let dir = store.dir(name);
    std::fs::write(dir.stop_request(), b"").sys_context(|| "request stop".into())?;
    let grace = validate::grace_period(rec.manifest.spec.as_ref().and_then(|s| s.termination_grace_period_seconds));
    let deadline = Instant::now() + grace + Duration::from_secs(15);
    while supervisor_alive(&store.load(name)?) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // No supervisor (it died, or the pod had ended): stop containers directly.
    let rec = store.load(name)?;
    for c in &rec.containers {
        if let Some(id) = &c.container_id {
            if let Ok(crec) = root.load(id) {
                if crec.init_alive() {
                    let _ = crate::oci::lifecycle::kill(root, id, nix::sys::signal::Signal::SIGKILL, true);
                    crate::oci::wait::wait_gone(crec.pid, Duration::from_secs(10));
                }
            }
        }
    }
    // A stopped pod gives its network back, as kubelet's StopPodSandbox does.
    let mut rec = store.load(name)?;
    if rec.network.is_some() {
        release_network(&store, &rec);
        rec.network = None;
        rec.ips.clear();
        store.save(&rec)?;
    }
    Ok(())
}

/// Stop (if needed) and remove everything of the pod.
pub fn remove(root: &StateRoot, name: &str) -> Result<()> {
    let store = PodStore::new(&root.path);
    let rec = store.load(name)?;
    stop(root, name)?;
    let rec = store.load(name).unwrap_or(rec);
    if supervisor_alive(&rec) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.supervisor_pid), nix::sys::signal::Signal::SIGKILL);
        crate::oci::wait::wait_gone(rec.supervisor_pid, Duration::from_secs(5));
    }
    teardown(root, &store, &rec);
    Ok(())
}

/// The pods of one namespace.
pub fn list(root: &StateRoot, namespace: &str) -> Vec<PodRecord> {
    let store = PodStore::new(&root.path);
    store
        .names()
        .iter()
        .filter_map(|n| status(root, n).ok())
        .filter(|p| p.namespace == namespace)
        .collect()
}

/// "pod P has no container C" (or no app container), as a NotFound.
fn no_container(key: &str, container: Option<&str>) -> Error {
    let pod = key.replacen('_', "/", 1);
    Error::Runtime(crate::runtime::RuntimeError::not_found(match container {
        Some(c) => format!("pod {pod:?} has no container {c:?}"),
        None => format!("pod {pod:?} has no app container"),
    }))
}

/// The log file of a container's current attempt.
pub fn log_path(root: &StateRoot, name: &str, container: Option<&str>) -> Result<PathBuf> {
    let rec = status(root, name)?;
    let c = match container {
        Some(cn) => rec.containers.iter().find(|c| c.name == cn),
        None => rec.containers.iter().find(|c| !c.init),
    }
    .ok_or_else(|| no_container(name, container))?;
    Ok(PodStore::new(&root.path).dir(name).log(&c.name, c.attempt))
}

/// The OCI id of a container's current attempt, if it is running.
pub fn running_container(root: &StateRoot, name: &str, container: Option<&str>) -> Result<String> {
    let rec = status(root, name)?;
    let c = match container {
        Some(cn) => rec.containers.iter().find(|c| c.name == cn),
        None => rec.containers.iter().find(|c| !c.init),
    }
    .ok_or_else(|| no_container(name, container))?;
    if c.state != ContainerState::Running {
        return Err(Error::InvalidState(format!("container {} of pod {name} is not running", c.name)));
    }
    c.container_id.clone().ok_or_else(|| Error::InvalidState("no container id".into()))
}

/// Print the log's content lines (CRI format → plain text).
pub fn print_log(path: &Path, from: u64, out: &mut impl std::io::Write) -> u64 {
    let Ok(bytes) = std::fs::read(path) else { return from };
    if (bytes.len() as u64) < from {
        return from;
    }
    let new = &bytes[from as usize..];
    let Some(last_nl) = new.iter().rposition(|b| *b == b'\n') else { return from };
    let text = String::from_utf8_lossy(&new[..=last_nl]);
    for line in text.lines() {
        if let Some((_, partial, content)) = crate::monitor::crilog::parse_line(line) {
            let _ = out.write_all(content.as_bytes());
            if !partial {
                let _ = out.write_all(b"\n");
            }
        }
    }
    from + last_nl as u64 + 1
}
