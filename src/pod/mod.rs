//! Pods without a kubelet: `hull pod run pod.yaml` and friends, a front end
//! over the runtime layer as the kubelet is one over CRI.
//!
//! A manifest becomes a runtime sandbox and, per container attempt, a
//! runtime container ([`translate`]); the pod's volumes are made on the
//! host first ([`volumes`]); a per-pod supervisor process ([`supervisor`])
//! that outlives the command runs init containers, restarts, back-off and
//! probes by calling the runtime. The pod's own record ([`store`]) keeps
//! only what the runtime layer does not.
pub mod backoff;
pub mod eviction;
pub mod layout;
pub mod manifest;
pub mod names;
pub mod probe;
pub mod store;
pub mod supervisor;
pub mod translate;
pub mod validate;
pub mod volumes;
pub mod wake;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result, SysContext};
pub use layout::PodRoots;

use crate::runtime::{Runtime, RuntimeOptions, SandboxId};
use store::{ContainerState, PodDir, PodRecord, PodStore};

/// Options of `hull pod run`.
pub struct RunOptions {
    pub manifest: String,
    /// Kubelet's restart back-off base (10 s); smaller for tests.
    pub backoff_base: Duration,
    /// How long to wait for the containers to be running.
    pub wait: Duration,
    /// `-n/--namespace`; None: the manifest's `metadata.namespace`, else
    /// `default`.
    pub namespace: Option<String>,
}

/// The runtime layer `hull pod` stands on, opened as the CRI daemon opens
/// its own, on a state directory and a run directory of its own (so that
/// neither sees the other's sandboxes): its records in
/// `<state dir>/pod-runtime`, its runtime files (OCI state, exit records,
/// netns pins) in `<root>/pod-run`.
pub fn open_runtime(roots: &PodRoots, image_root: &Path, cni: crate::network::CniOptions) -> Result<Runtime> {
    let mut opts = RuntimeOptions::new(roots.runtime_state(), roots.run());
    opts.image_root = image_root.to_path_buf();
    opts.cni = cni;
    // This process may run from a sealed copy of the binary (see main),
    // which has no path to exec: its own /proc link is the one that works.
    opts.hull = PathBuf::from("/proc/self/exe");
    Ok(Runtime::open(opts)?)
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

/// The pod's sandbox: the record's, else (a `pod run` cut short between
/// making it and writing its id) the one the runtime's name index holds.
fn sandbox_of(rt: &Runtime, rec: &PodRecord) -> Option<SandboxId> {
    rec.sandbox_id.clone().or_else(|| rt.find_sandbox(&rec.namespace, &rec.name, 0).ok().flatten())
}

/// Undo everything of a pod: the runtime sandbox (its containers, holder,
/// network, cgroups), the volumes mounted on the host, the pod directory.
/// Used by `rm` and by a failed `run`. A sandbox that cannot be removed
/// keeps the record, so that a later `rm` can try again.
fn teardown(rt: &Runtime, store: &PodStore, rec: &PodRecord) -> Result<()> {
    if let Some(id) = sandbox_of(rt, rec) {
        rt.remove_sandbox(&id)?;
    }
    let owner = state_owner(rec);
    match &rec.state_dir {
        Some(state) if !volumes::owns_pod_state(state, &owner) => {
            // Another pod's (of the same metadata.uid), made after this
            // run recorded it and was cut short: it and its mounts stay.
            log::warn!("pod {}: {} belongs to another pod: left alone", store::shown(&rec.key()), state.display());
            volumes::remove_pod_state_in_making(state, &owner)?;
        }
        Some(state) => {
            volumes::unmount_all(&rec.volume_mounts);
            // A tmpfs mounted by a `pod run` killed before it recorded the
            // mount: every emptyDir of the manifest is unmounted (not
            // mounted: a no-op) before the state directory is deleted.
            let vdir = volumes::volumes_dir(state);
            let spec = rec.manifest.spec.as_ref();
            let empty_dirs: Vec<PathBuf> = spec
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .filter(|v| v.empty_dir.is_some())
                .map(|v| volumes::host_path(&vdir, v))
                .collect();
            volumes::unmount_all(&empty_dirs);
            volumes::remove_pod_state(state, &owner)?;
        }
        None => volumes::unmount_all(&rec.volume_mounts),
    }
    drop_image_lease(store, rec)?;
    store.remove_dirs(&rec.key())
}

pub fn run(roots: &PodRoots, rt: &Runtime, opts: &RunOptions) -> Result<PodRecord> {
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
    let store = PodStore::new(roots);
    let uid = pod.metadata.uid.clone().unwrap_or_else(new_uid);
    volumes::check_uid(&uid)?;
    let lock = store.lock(&key)?;
    clear_interrupted(rt, &store, &key)?;
    let dir = store.claim(&key)?;
    let mut rec = PodRecord {
        name: name.clone(),
        namespace,
        uid: uid.clone(),
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        phase: "Pending".into(),
        manifest: pod.clone(),
        sandbox_id: None,
        supervisor_pid: 0,
        backoff_base_ms: u64::try_from(opts.backoff_base.as_millis()).unwrap_or(u64::MAX),
        volume_mounts: Vec::new(),
        state_dir: None,
        reason: String::new(),
        message: String::new(),
        image_root: rt.options().image_root.clone(),
        containers: supervisor::initial_statuses(&pod),
    };
    // The record first: from here on `pod rm` finds what was made.
    let supervisor = match store.save(&rec).and_then(|()| set_up(roots, rt, &store, &dir, &mut rec, opts)) {
        Ok(pid) => pid,
        Err(e) => {
            if let Err(te) = teardown(rt, &store, &rec) {
                log::warn!("pod {}: undo a failed run: {te}", store::shown(&key));
            }
            return Err(e);
        }
    };
    drop(lock);
    wait_started(&store, &key, opts.wait, supervisor)
}

/// Undo what a `pod run` killed half-way left under this name, so that
/// this run can go on: a directory without a record, or a record whose
/// supervisor never started. A run holds the pod's lock (the caller has it
/// now) until its supervisor is spawned, and a supervisor holds the
/// supervisor lock from its spawn on, so with both free nobody is working
/// on such a pod any more.
fn clear_interrupted(rt: &Runtime, store: &PodStore, key: &str) -> Result<()> {
    let dir = store.dir(key);
    if !dir.path.exists() {
        return Ok(());
    }
    // A record whose run directory is gone (a reboot emptied the root, or
    // a removal stopped between the two): the lock file has a place again.
    store.make_run_dir(&dir)?;
    match store.load(key) {
        Err(Error::Runtime(e)) if e.kind() == crate::runtime::ErrorKind::NotFound => {
            log::warn!("pod {}: removing what an interrupted `pod run` left", store::shown(key));
            remove_unrecorded(rt, store, key)
        }
        Ok(rec) if rec.supervisor_pid == 0 && !rec.is_final() => {
            let Some(_sup) = try_supervisor_lock(&dir)? else { return Ok(()) };
            log::warn!("pod {}: removing what an interrupted `pod run` left", store::shown(key));
            teardown(rt, store, &rec)
        }
        _ => Ok(()),
    }
}

/// The supervisor lock, if no supervisor holds it.
fn try_supervisor_lock(dir: &PodDir) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let f = match std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.supervisor_lock()) {
        Ok(f) => f,
        // The pod's directory is gone: so is its supervisor.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::sys("open the supervisor lock", e)),
    };
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::sys("lock the supervisor lock", e)),
    }
}

/// Who a pod's state directory belongs to: this run of this pod (its key
/// and creation time), written in the directory (see
/// `volumes::make_pod_state`).
fn state_owner(rec: &PodRecord) -> String {
    format!("{} {}", rec.key(), rec.created)
}

/// Make the pod's state directory, named in its record before it is made
/// (a `pod run` killed right after the mkdir leaves a record that lists
/// it). One that exists already is another pod's (the same metadata.uid):
/// refused before anything is recorded, and unrecorded again if another
/// pod made it meanwhile.
fn claim_pod_state(store: &PodStore, rec: &mut PodRecord, pod_state: &Path) -> Result<()> {
    let owner = state_owner(rec);
    if pod_state.exists() {
        return volumes::make_pod_state(pod_state, &owner);
    }
    rec.state_dir = Some(pod_state.to_path_buf());
    store.save(rec)?;
    if let Err(e) = volumes::make_pod_state(pod_state, &owner) {
        rec.state_dir = None;
        store.save(rec)?;
        return Err(e);
    }
    Ok(())
}

/// Returns the pid of the supervisor it started.
fn set_up(roots: &PodRoots, rt: &Runtime, store: &PodStore, dir: &PodDir, rec: &mut PodRecord, opts: &RunOptions) -> Result<Option<i32>> {
    let spec = rec.manifest.spec.clone().expect("validated");
    let pod_state = volumes::pod_state_dir(&roots.state_dir, &rec.uid);
    if spec.volumes.iter().flatten().any(|v| v.empty_dir.is_some()) && rec.state_dir.is_none() {
        claim_pod_state(store, rec, &pod_state)?;
    }
    let owner = state_owner(rec);
    let vols = volumes::prepare(&pod_state, spec.volumes.as_deref().unwrap_or(&[]), &mut rec.state_dir, &mut rec.volume_mounts, &owner);
    store.save(rec)?;
    let vols = vols?;
    // Translate and check every container now, so that a bad manifest
    // fails here rather than in the supervisor.
    let mut images = Vec::new();
    for (kind, list) in [("initContainers", spec.init_containers.clone().unwrap_or_default()), ("containers", spec.containers.clone())] {
        for (i, c) in list.iter().enumerate() {
            let field = format!("spec.{kind}[{i}]");
            images.extend(check_container(rt, &rec.manifest, c, &field, &vols)?);
        }
    }
    // The store's images are the pod's for its whole life (every restart
    // needs them again): an `image rm` of one is refused until `pod rm`.
    if !images.is_empty() {
        let owner = format!(
            "pod {} (hull --root {} pod --state-dir {})",
            store::shown(&rec.key()),
            roots.root.display(),
            roots.state_dir.display()
        );
        crate::image::Store::open(&rec.image_root)?.put_lease(&image_lease(store, &rec.key()), &owner, &images)?;
    }
    let config = translate::sandbox_config(&rec.manifest, &rec.namespace, &rec.uid, &dir.logs())?;
    let id = rt.create_sandbox(&config).map_err(|e| e.context("pod sandbox"))?;
    rec.sandbox_id = Some(id);
    store.save(rec)?;
    spawn_supervisor(roots, dir, &rec.key(), opts.backoff_base, &rec.image_root)
}

/// The name of a pod's lease in the image store: one per pod and root.
fn image_lease(store: &PodStore, key: &str) -> String {
    use sha2::Digest as _;
    let id = format!("{}\0{key}", store.path.display());
    format!("pod-{:x}", sha2::Sha256::digest(id.as_bytes()))
}

/// Give the pod's lease on its images back (none taken, as for a pod of
/// directory images: nothing to do, nothing written, so a read-only store
/// does not stop the removal).
fn drop_image_lease(store: &PodStore, rec: &PodRecord) -> Result<()> {
    let name = image_lease(store, &rec.key());
    if std::fs::symlink_metadata(rec.image_root.join("leases").join(&name)).is_err() {
        return Ok(());
    }
    crate::image::Store::open(&rec.image_root)?.drop_lease(&name)?;
    Ok(())
}

/// A container's probes, translation, image, command and volume sources,
/// each error naming the manifest field. Returns the container's image
/// when it is one of the store's.
fn check_container(
    rt: &Runtime,
    pod: &k8s_openapi::api::core::v1::Pod,
    c: &k8s_openapi::api::core::v1::Container,
    field: &str,
    vols: &[translate::HostVolume],
) -> Result<Option<crate::image::store::ImageRecord>> {
    probe::specs_of(c).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
    let config = translate::container_config(pod, c, field, vols, 0)?;
    let image = crate::runtime::rootfs::resolve(&config.image.image, &format!("{field}.image"), &rt.options().image_root)?;
    let mut spec = crate::runtime::spec::base();
    crate::runtime::spec::process(&mut spec, &config, image.config()).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
    for (i, m) in config.mounts.iter().enumerate() {
        let vm = format!("{field}.volumeMounts[{i}]");
        crate::runtime::mounts::open_source(m, &vm).map_err(|e| {
            let why = e.to_string();
            let why = why.split_once(": ").map_or(why.as_str(), |(_, w)| w).to_string();
            Error::InvalidArgument(if m.sub_path.is_empty() { format!("{vm}: {why}") } else { format!("{vm}.subPath: {why}") })
        })?;
    }
    Ok(match image {
        crate::runtime::rootfs::Source::Store(i) => Some(i.record),
        crate::runtime::rootfs::Source::Dir(_) => None,
    })
}

/// Start the pod's supervisor, unless one runs. Its lock is taken here and
/// handed to it (fd 3): from before it exists until it ends, a supervisor
/// of this pod is seen by its lock, even one whose pid was never recorded.
/// Returns the pid of the one started (None: one runs already).
fn spawn_supervisor(roots: &PodRoots, dir: &PodDir, name: &str, backoff: Duration, image_root: &Path) -> Result<Option<i32>> {
    let Some(lock) = try_supervisor_lock(dir)? else {
        return Ok(None);
    };
    let lock_fd = std::os::fd::AsRawFd::as_raw_fd(&*lock);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.supervisor_log())
        .sys_context(|| "open supervisor log".into())?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("--root")
        .arg(&roots.root)
        .arg("--image-root")
        .arg(image_root)
        .arg("--log")
        .arg(dir.supervisor_log())
        .args(["pod", "--state-dir"])
        .arg(&roots.state_dir)
        .args(["supervise", "--backoff-base-ms"])
        .arg(backoff.as_millis().to_string())
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().sys_context(|| "dup log".into())?)
        .stderr(log);
    // SAFETY: setsid and dup2 are async-signal-safe; dup2 leaves the new
    // fd 3 without FD_CLOEXEC, so the locked file description reaches the
    // supervisor.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::setsid();
            // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
            let r = if lock_fd == SUPERVISOR_LOCK_FD {
                libc::fcntl(lock_fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(lock_fd, SUPERVISOR_LOCK_FD)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The child is not waited for: it outlives this command (a zombie
    // until then, so its pid stays ours to open a pidfd on).
    let child = cmd.spawn().sys_context(|| "start pod supervisor".into())?;
    drop(lock);
    Ok(i32::try_from(child.id()).ok())
}

/// Wait (bounded) until every app container runs, or the pod ended, or a
/// container could not be created or started, or the supervisor (pid
/// `supervisor`, when this command started it) is gone. Woken by the
/// supervisor's writes of the record (renamed into its directory, seen
/// with inotify) and by the supervisor's end (its pidfd), never by a timer
/// but the limit.
fn wait_started(store: &PodStore, name: &str, limit: Duration, supervisor: Option<i32>) -> Result<PodRecord> {
    let deadline = Instant::now() + limit;
    // Watch first, then look: a write between the two still wakes us.
    let mut wake = match wake::RecordWatch::open(&store.dir(name).path, supervisor) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("pod {}: not waiting for its containers: {e}", store::shown(name));
            None
        }
    };
    loop {
        let rec = store.load(name)?;
        let app = rec.containers.iter().filter(|c| !c.init);
        // The phase too: the supervisor records it after the last start,
        // in a write of its own, and a run that returned in between would
        // show (and leave, were the supervisor killed then) `Pending`.
        let all_running = rec.phase == "Running" && app.clone().all(|c| c.state == ContainerState::Running);
        if all_running || rec.containers.iter().any(start_failed) || rec.is_final() {
            return Ok(rec);
        }
        match wake.as_mut() {
            // Once the supervisor is gone, nothing changes the record.
            Some(w) if !w.process_gone() && Instant::now() < deadline => w.wait(deadline),
            _ => return Ok(rec),
        }
    }
}

/// A container the runtime could not create or start.
pub fn start_failed(c: &store::ContainerStatus) -> bool {
    matches!(c.reason.as_str(), "CreateContainerError" | "RunContainerError")
}

/// The fd a supervisor gets its lock on.
const SUPERVISOR_LOCK_FD: i32 = 3;

/// The supervisor lock as handed over by [`spawn_supervisor`] (fd 3, the
/// same file), else taken here; None when another supervisor holds it.
fn own_supervisor_lock(dir: &PodDir) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    use std::os::unix::fs::MetadataExt;
    let path = std::fs::metadata(dir.supervisor_lock()).ok();
    // SAFETY: fstat only writes the struct; fd 3 may be closed (EBADF).
    let inherited = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(SUPERVISOR_LOCK_FD, &mut st) == 0).then_some(st)
    };
    if let (Some(p), Some(fd)) = (path, inherited) {
        if p.dev() == fd.st_dev && p.ino() == fd.st_ino {
            // SAFETY: fd 3 is the lock file our spawner dup'ed for us, open
            // and owned by nothing else in this process.
            let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(SUPERVISOR_LOCK_FD) };
            // Not to be inherited by the monitors and probes this process
            // starts: the lock must end with the supervisor.
            nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .map_err(|e| Error::sys("set FD_CLOEXEC on the supervisor lock", e))?;
            // Already locked through this very file description: flock
            // on it again succeeds.
            return match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(l) => Ok(Some(l)),
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                Err((_, e)) => Err(Error::sys("lock the supervisor lock", e)),
            };
        }
    }
    try_supervisor_lock(dir)
}

/// Entry point of the detached supervisor process.
pub fn supervise(roots: &PodRoots, rt: Runtime, name: &str, backoff_base: Duration) -> Result<()> {
    nix::sys::prctl::set_child_subreaper(false).ok();
    let store = PodStore::new(roots);
    let dir = store.dir(name);
    // One supervisor per pod: a second one (two commands that both found
    // the first dead) leaves at once.
    let Some(_lock) = own_supervisor_lock(&dir)? else {
        return Ok(());
    };
    let mut rec = store.load(name)?;
    rec.supervisor_pid = std::process::id() as i32;
    let sandbox = rec
        .sandbox_id
        .clone()
        .ok_or_else(|| Error::InvalidState(format!("pod {}: no sandbox", store::shown(name))))?;
    let spec = rec.manifest.spec.clone().expect("validated");
    // Volumes were made by `run`; only their host paths are needed here.
    let vols = volumes::existing(&rec_volumes_dir(&rec), spec.volumes.as_deref().unwrap_or(&[]));
    let mut sup = supervisor::Supervisor {
        rt: Arc::new(rt),
        store: &store,
        dir,
        rec,
        sandbox,
        volumes: vols,
        backoff_base,
        hull: PathBuf::from("/proc/self/exe"),
    };
    sup.run()
}

/// Where a pod's emptyDirs are (nowhere when it has none).
pub fn rec_volumes_dir(rec: &PodRecord) -> PathBuf {
    rec.state_dir.as_deref().map(volumes::volumes_dir).unwrap_or_default()
}

/// The current state of a pod's containers, with exits read from the
/// runtime (right even if the supervisor died). A pod whose supervisor
/// died before the pod ended gets a new one, which takes over from the
/// record (running containers are adopted, restarts and probes resume).
pub fn status(roots: &PodRoots, rt: &Runtime, name: &str) -> Result<PodRecord> {
    let store = PodStore::new(roots);
    let mut rec = store.load(name)?;
    let dir = store.dir(name);
    let supervised = supervisor_alive(&rec);
    if rec.supervisor_pid > 0 && !rec.is_final() && !supervised && !dir.stop_request().exists() {
        log::warn!("pod {name}: its supervisor is gone; starting a new one");
        spawn_supervisor(roots, &dir, name, Duration::from_millis(rec.backoff_base_ms), &rec.image_root).map(drop)?;
    }
    for c in &mut rec.containers {
        if c.state != ContainerState::Running {
            continue;
        }
        let Some(exit) = c
            .container_id
            .as_ref()
            .and_then(|id| rt.container_status(id).ok())
            .and_then(|st| supervisor::exit_of(&st))
        else {
            continue;
        };
        c.state = ContainerState::Terminated;
        c.reason = exit.reason.clone();
        c.ready = false;
        c.last_exit = Some(exit);
    }
    // What the last supervisor wrote may be stale (it died, or the one
    // taking over from it has recorded itself but not yet looked): once
    // the containers settle the phase, theirs is shown (the supervisor
    // writes the same when it gets there).
    rec.phase = rec.derived_phase();
    Ok(rec)
}

/// A pod's record with what the runtime knows of its sandbox (the view
/// `pod ps -o json` prints).
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(flatten)]
    pub record: PodRecord,
    /// The sandbox's addresses (none once it is stopped).
    pub ips: Vec<String>,
    /// The sandbox holder, while it runs.
    pub holder_pid: Option<i32>,
    pub sandbox_ready: bool,
}

pub fn view(rt: &Runtime, rec: PodRecord) -> PodView {
    let st = sandbox_of(rt, &rec).and_then(|id| rt.sandbox_status(&id).ok());
    PodView {
        ips: st.as_ref().map(|s| s.ips.clone()).unwrap_or_default(),
        holder_pid: st.as_ref().and_then(|s| s.holder_pid),
        sandbox_ready: st.is_some_and(|s| s.state == crate::runtime::SandboxState::Ready),
        record: rec,
    }
}

pub fn supervisor_alive(rec: &PodRecord) -> bool {
    rec.supervisor_pid > 0 && crate::oci::state::process_start_time(rec.supervisor_pid).is_some()
}

/// Ask the supervisor to stop the pod's containers; wait (bounded). Then
/// stop the sandbox through the runtime (idempotent: whatever the
/// supervisor did not do, e.g. because it died, is done here), which gives
/// the network back, as kubelet's StopPodSandbox does.
pub fn stop(roots: &PodRoots, rt: &Runtime, name: &str) -> Result<()> {
    let _lock = PodStore::new(roots).lock(name)?;
    stop_locked(roots, rt, name).map(drop)
}

/// [`stop`], by a caller that holds the pod's lock. Returns the supervisor
/// lock, which keeps a new supervisor from starting while it is held.
fn stop_locked(roots: &PodRoots, rt: &Runtime, name: &str) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let store = PodStore::new(roots);
    let rec = store.load(name)?;
    let dir = store.dir(name);
    store.make_run_dir(&dir)?;
    // The durable request first (a supervisor started later reads it),
    // then the call that wakes the running one.
    std::fs::write(dir.stop_request(), b"").sys_context(|| "request stop".into())?;
    wake::call_stop(&dir.stop_fifo())?;
    let grace = validate::grace_period(rec.manifest.spec.as_ref().and_then(|s| s.termination_grace_period_seconds));
    // The running supervisor is waited for on its pidfd; the lock then
    // tells that no supervisor (also one not yet recorded) is left.
    let limit = grace.saturating_add(Duration::from_secs(15));
    let started = Instant::now();
    let rec = store.load(name)?;
    if supervisor_alive(&rec) {
        wake::wait_process_gone(rec.supervisor_pid, limit);
    }
    let sup_lock = wait_supervisor_gone(&store, name, limit.saturating_sub(started.elapsed()))?;
    let rec = store.load(name)?;
    if let Some(id) = sandbox_of(rt, &rec) {
        rt.stop_sandbox(&id, grace)?;
    }
    // A pod whose supervisor was gone: its phase says so now.
    let mut rec = status(roots, rt, name)?;
    if !rec.is_final() {
        rec.phase = "Stopped".into();
        store.save(&rec)?;
    }
    Ok(sup_lock)
}

/// Wait (bounded) for the supervisor to act on a stop request and end,
/// then SIGKILL it; returns its lock once free (None: still held after
/// that, by a supervisor whose pid was never recorded).
///
/// The lock is taken with a blocking flock on a helper thread (flock has
/// no timeout), which hands it over on a channel waited on with one: the
/// lock is ours the moment the last supervisor's fd closes. A thread still
/// blocked when we give up ends with this short-lived command, and a lock
/// it takes after that is dropped with the closed channel.
fn wait_supervisor_gone(store: &PodStore, name: &str, limit: Duration) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let dir = store.dir(name);
    if let Some(l) = try_supervisor_lock(&dir)? {
        return Ok(Some(l));
    }
    let f = match std::fs::OpenOptions::new().write(true).open(dir.supervisor_lock()) {
        Ok(f) => f,
        // The pod's run directory is gone: so is its supervisor.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::sys("open the supervisor lock", e)),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let locker = std::thread::Builder::new()
        .name("supervisor-lock".into())
        .spawn(move || {
            let _ = tx.send(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e));
        })
        .sys_context(|| "start a thread".into())?;
    let got = |r: std::result::Result<nix::fcntl::Flock<std::fs::File>, nix::errno::Errno>| {
        // It has sent: it ends now.
        let _ = locker.join();
        r.map(Some).map_err(|e| Error::sys("lock the supervisor lock", e))
    };
    let r = match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => {
            let rec = store.load(name)?;
            if supervisor_alive(&rec) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(rec.supervisor_pid), nix::sys::signal::Signal::SIGKILL);
            }
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(r) => r,
                Err(_) => return Ok(None),
            }
        }
    };
    got(r)
}

/// Stop (if needed) and remove everything of the pod. Concurrent
/// removals of one pod take turns and all succeed; a directory that a
/// `pod run` cut short left without a record is removed too.
pub fn remove(roots: &PodRoots, rt: &Runtime, name: &str) -> Result<()> {
    let store = PodStore::new(roots);
    let existed = store.dir(name).path.exists() || store.dir(name).run.exists();
    let _lock = store.lock(name)?;
    let rec = match store.load(name) {
        Ok(rec) => rec,
        Err(Error::Runtime(e)) if e.kind() == crate::runtime::ErrorKind::NotFound && existed => {
            return remove_unrecorded(rt, &store, name);
        }
        Err(e) => return Err(e),
    };
    // The supervisor lock is held to the end: no supervisor starts anew
    // under a pod being removed.
    let _sup = stop_locked(roots, rt, name)?;
    let rec = store.load(name).unwrap_or(rec);
    teardown(rt, &store, &rec)
}

/// A pod directory without a record: a `pod run` killed between claiming
/// it and its first write, or a removal that already finished. The
/// sandbox, if one was made, is found by the pod's name.
fn remove_unrecorded(rt: &Runtime, store: &PodStore, key: &str) -> Result<()> {
    let (namespace, name) = key.split_once('_').unwrap_or(("default", key));
    if let Some(id) = rt.find_sandbox(namespace, name, 0)? {
        rt.remove_sandbox(&id)?;
    }
    store.remove_dirs(key)
}

/// The pods of one namespace.
pub fn list(roots: &PodRoots, rt: &Runtime, namespace: &str) -> Vec<PodRecord> {
    let store = PodStore::new(roots);
    store
        .names()
        .iter()
        .filter_map(|n| status(roots, rt, n).ok())
        .filter(|p| p.namespace == namespace)
        .collect()
}

/// "pod P has no container C" (or no app container), as a NotFound.
fn no_container(key: &str, container: Option<&str>) -> Error {
    let pod = store::shown(key);
    Error::Runtime(crate::runtime::RuntimeError::not_found(match container {
        Some(c) => format!("pod {pod:?} has no container {c:?}"),
        None => format!("pod {pod:?} has no app container"),
    }))
}

fn find_container<'a>(rec: &'a PodRecord, name: &str, container: Option<&str>) -> Result<&'a store::ContainerStatus> {
    match container {
        Some(cn) => rec.containers.iter().find(|c| c.name == cn),
        None => rec.containers.iter().find(|c| !c.init),
    }
    .ok_or_else(|| no_container(name, container))
}

/// The log file of a container's current attempt.
pub fn log_path(roots: &PodRoots, rt: &Runtime, name: &str, container: Option<&str>) -> Result<PathBuf> {
    let rec = status(roots, rt, name)?;
    let c = find_container(&rec, name, container)?;
    Ok(PodStore::new(roots).dir(name).log(&c.name, c.attempt))
}

/// The runtime id of a container's current attempt, if it is running.
pub fn running_container(roots: &PodRoots, rt: &Runtime, name: &str, container: Option<&str>) -> Result<crate::runtime::ContainerId> {
    let rec = status(roots, rt, name)?;
    let c = find_container(&rec, name, container)?;
    if c.state != ContainerState::Running {
        return Err(Error::InvalidState(format!("container {} of pod {} is not running", c.name, store::shown(name))));
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
