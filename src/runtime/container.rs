//! Containers: rootfs, typed spec, a monitor holding the container created
//! until start, stop with escalation, remove, status from the monitors'
//! exit records, limits, stats, log reopening.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use super::config::{ContainerConfig, LinuxResources, NamespaceMode};
use super::error::{ErrorKind, Result, RuntimeError};
use super::events::{exit_path, wait_exit};
use super::id::{ContainerId, SandboxId};
use super::names::{container_key, Kind};
use super::record::{self, ContainerPhase, ContainerRecord, RootfsRecord, SandboxPhase};
use super::status::{ContainerFilter, ContainerState, ContainerStats, ContainerStatus, EventKind};
use super::{holder, rootfs, spec, Runtime};
use crate::monitor::exit::ExitRecord;
use crate::oci::lifecycle;

/// How long a SIGKILLed container may take to be reaped and recorded.
const KILL_GRACE: Duration = Duration::from_secs(10);

fn io_err(what: String, e: std::io::Error) -> RuntimeError {
    RuntimeError::with_source(ErrorKind::Internal, what, e)
}

/// The usage in a cgroup, as the CRI reports it.
pub fn stats_of(id: &str, cg: &crate::cgroups::Cgroup) -> ContainerStats {
    let s = cg.stats();
    let raw = |k: &str| s.memory.raw.get(k).copied().unwrap_or(0);
    let usage = s.memory.usage.usage;
    // The kubelet's working set: usage less the inactive file pages.
    let inactive = if cg.layout == crate::cgroups::Layout::V1 { raw("total_inactive_file") } else { raw("inactive_file") };
    ContainerStats {
        id: id.to_string(),
        timestamp: Some(SystemTime::now()),
        cpu_usage_core_nanoseconds: s.cpu.usage.total,
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive),
        memory_rss_bytes: if cg.layout == crate::cgroups::Layout::V1 { raw("total_rss") } else { raw("anon") },
        memory_page_faults: if cg.layout == crate::cgroups::Layout::V1 { raw("total_pgfault") } else { raw("pgfault") },
        memory_major_page_faults: if cg.layout == crate::cgroups::Layout::V1 { raw("total_pgmajfault") } else { raw("pgmajfault") },
        pids: s.pids.current,
        swap: cg.swap_usage(),
    }
}

/// Whether a container's init still runs (its recorded pid, not recycled,
/// not a zombie).
fn init_alive(rec: &ContainerRecord) -> bool {
    process_alive(rec.pid, rec.pid_start_time)
}

/// Whether a container's monitor still runs.
fn monitor_alive(rec: &ContainerRecord) -> bool {
    process_alive(rec.monitor_pid, rec.monitor_start_time)
}

/// A recorded process still runs: its pid shows the recorded start time.
fn process_alive(pid: Option<i32>, start: Option<u64>) -> bool {
    pid.zip(start).is_some_and(|(p, t)| crate::oci::state::process_start_time(p) == Some(t))
}

/// A relative log path without `..` (it is joined to the log directory).
fn check_log_path(p: &str) -> Result<()> {
    if p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty()) || p.contains('\0') {
        return Err(RuntimeError::invalid(format!("log_path {p:?}: must be relative to the sandbox log directory, without ..")));
    }
    Ok(())
}

fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s).ok()
}

impl Runtime {
    pub(super) fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.opts.state_dir.join("containers").join(id.as_str())
    }

    pub(super) fn container_run_dir(&self, id: &ContainerId) -> PathBuf {
        self.opts.run_dir.join("containers").join(id.as_str())
    }

    pub(super) fn load_container(&self, id: &ContainerId) -> Result<ContainerRecord> {
        record::read(&self.container_dir(id).join("container.json"), &format!("container {id}"))
    }

    fn save_container(&self, rec: &ContainerRecord) -> Result<()> {
        record::write_atomic(&self.container_dir(&rec.id).join("container.json"), rec)
    }

    fn container_exists(&self, id: &str) -> bool {
        ContainerId::parse(id).is_ok_and(|id| self.container_dir(&id).join("container.json").exists())
    }

    /// Bring a record up to date with its exit record; true if it changed.
    pub(super) fn refresh(&self, rec: &mut ContainerRecord) -> bool {
        if !matches!(rec.phase, ContainerPhase::Created | ContainerPhase::Running) {
            return false;
        }
        let Some(exit) = ExitRecord::load(&exit_path(&self.exits_dir(), &rec.id)) else {
            return false;
        };
        rec.finished_at = parse_time(&exit.finished_at).or(Some(SystemTime::now()));
        rec.exit = Some(exit);
        rec.phase = ContainerPhase::Exited;
        rec.pid = None;
        true
    }

    /// Called when a monitor's exit record appears: the record says
    /// Exited, and a Stopped event goes out (once, by whoever changed it).
    pub(super) fn note_exit(&self, id: &ContainerId) {
        let Ok(_lock) = record::lock(&self.container_dir(id), "container") else {
            return;
        };
        let Ok(mut rec) = self.load_container(id) else {
            return;
        };
        if self.refresh(&mut rec) && self.save_container(&rec).is_ok() {
            self.release_exited(&rec);
            self.bus.publish(EventKind::Stopped, &rec.sandbox_id, Some(id));
        }
    }

    /// Give back what an exited container holds on the node, as soon as
    /// its exit is recorded (containerd deletes a task when it exits, so
    /// RemoveContainer has little left to do): its OCI state and cgroup
    /// (the OOM counter read first), staged bind mounts, image volumes and
    /// rootfs mount. Its records, name, log and writable layer (the
    /// overlay's upper dir, which the stats read) stay until removal,
    /// which does all of this again for an exit nobody saw (each step is a
    /// no-op when done).
    fn release_exited(&self, rec: &ContainerRecord) {
        let id = rec.id.as_str();
        match lifecycle::delete(&self.oci_root(), id, true) {
            Ok(Some(true)) => log::info!("container {id} was OOM-killed"),
            Ok(_) | Err(crate::Error::NotFound(_)) => {}
            Err(e) => log::warn!("container {id}: delete: {e}"),
        }
        super::mounts::unstage(&rec.staged_mounts);
        for v in &rec.image_volumes {
            rootfs::unmount(v);
        }
        if let Some(r) = &rec.rootfs {
            rootfs::unmount(r);
        }
    }

    /// Make a container in a Ready sandbox; its process waits in state
    /// Created until [`Runtime::start_container`].
    pub fn create_container(&self, sandbox: &SandboxId, config: &ContainerConfig) -> Result<ContainerId> {
        self.create(sandbox, config, true)
    }

    /// [`Runtime::create_container`] that returns once the container's
    /// monitor is started, before the monitor has made the OCI container
    /// (its namespaces, cgroup and mounts: most of a create's time), and
    /// without a record write more. The container is Created from the
    /// caller's view at once (its record still says Creating, and this
    /// runtime holds the monitor's report); the next start, stop, removal
    /// or resource update of it reads the report, and a failure to make
    /// it shows there: start fails with it, and the container is Exited
    /// with exit code 128 and the reason StartError, as containerd's
    /// CreateContainer leaves runc's create to StartContainer. Every
    /// check of the config is still made here. A crash of the launching
    /// process before then leaves a Creating record, undone at the next
    /// open.
    pub fn launch_container(&self, sandbox: &SandboxId, config: &ContainerConfig) -> Result<ContainerId> {
        self.create(sandbox, config, false)
    }

    fn create(&self, sandbox: &SandboxId, config: &ContainerConfig, wait: bool) -> Result<ContainerId> {
        let what = format!("container {:?} in sandbox {}", config.metadata.name, sandbox.short());
        super::sandbox::check_name("container metadata.name", &config.metadata.name).map_err(|e| e.context(&what))?;
        if !config.log_path.is_empty() {
            check_log_path(&config.log_path).map_err(|e| e.context(&what))?;
        }
        let id = ContainerId::generate()?;
        // Its directory made and listed in the sandbox under the sandbox's
        // lock: a sandbox stop or removal from now on knows about this
        // container, and a listed id without a directory is one removed
        // (see `prune_containers`).
        let sdir = self.sandbox_dir(sandbox);
        let (sbox, lock) = {
            let _l = record::lock(&sdir, &format!("sandbox {sandbox}"))?;
            let mut s = self.load_sandbox(sandbox)?;
            if s.phase != SandboxPhase::Ready || !s.holder.is_some_and(|h| h.alive()) {
                return Err(RuntimeError::precondition(format!("sandbox {sandbox} is not ready")).context(&what));
            }
            // The kubelet marks a sandbox privileged when one of its
            // containers is; containerd and CRI-O refuse a privileged
            // container in any other sandbox.
            if config.security_context.privileged && !s.config.security_context.privileged {
                return Err(RuntimeError::invalid(format!(
                    "security_context.privileged: sandbox {sandbox} is not privileged (its security_context.privileged is false)"
                ))
                .context(&what));
            }
            // Locked before the first record (see `create_sandbox`).
            let dir = self.container_dir(&id);
            let lock = record::create_object_dir(&dir, &format!("container {id}")).map_err(|e| e.context(&what))?;
            s.containers.push(id.clone());
            if let Err(e) = self.list_in_sandbox(sandbox, &id) {
                drop(lock);
                let _ = record::remove_object_dirs(&[dir]);
                return Err(e.context(&what));
            }
            (s, lock)
        };
        let result = self.create_listed(&sbox, &id, config, lock, wait);
        if let Err(e) = result {
            if let Ok(_l) = record::lock(&sdir, "sandbox") {
                if let Ok(mut s) = self.load_sandbox(sandbox) {
                    s.containers.retain(|c| *c != id);
                    let _ = self.save_sandbox(&s);
                }
            }
            return Err(e.context(&what));
        }
        self.bus.publish(EventKind::Created, sandbox, Some(&id));
        Ok(id)
    }

    /// Drop from a sandbox's list (under its lock) the containers removed
    /// since: their directories are gone (a removal renames it aside
    /// first; a creation makes it under the sandbox's lock, before the id
    /// is listed). RemoveContainer leaves the list alone, one synced
    /// write less.
    pub(super) fn prune_containers(&self, s: &mut super::record::SandboxRecord) {
        s.containers.retain(|c| self.container_dir(c).is_dir());
    }

    fn create_listed(
        &self,
        sbox: &super::record::SandboxRecord,
        id: &ContainerId,
        config: &ContainerConfig,
        lock: record::ObjectLock,
        wait: bool,
    ) -> Result<()> {
        let dir = self.container_dir(id);
        let run = self.container_run_dir(id);
        if let Err(e) = std::fs::create_dir_all(&run) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io_err(format!("create {}", run.display()), e));
        }
        let log_rel = if config.log_path.is_empty() {
            format!("{}/{}.log", config.metadata.name, config.metadata.attempt)
        } else {
            config.log_path.clone()
        };
        let mut rec = ContainerRecord {
            id: id.clone(),
            sandbox_id: sbox.id.clone(),
            config: config.clone(),
            phase: ContainerPhase::Creating,
            created_at: SystemTime::now(),
            started_at: None,
            exit: None,
            finished_at: None,
            image_ref: String::new(),
            rootfs: None,
            log_path: sbox.log_directory.join(log_rel),
            pid: None,
            pid_start_time: None,
            monitor_pid: None,
            monitor_start_time: None,
            stop_signal: "SIGTERM".into(),
            resources: config.resources.clone(),
            staged_mounts: Vec::new(),
            image_volumes: Vec::new(),
            start_error: None,
        };
        let key = container_key(sbox.id.as_str(), &config.metadata.name, config.metadata.attempt);
        // The image is resolved before the first record, which names the
        // rootfs it is about to mount (one record write less).
        let reserved = rootfs::resolve(&config.image.image, "image", &self.opts.image_root).and_then(|source| {
            rec.rootfs = Some(rootfs::plan(&source, &dir, &self.opts.image_root, config.security_context.readonly_rootfs));
            // Without the directory's sync: a power loss that takes this
            // first record takes whatever it lists too (mounts, processes),
            // and a directory without a record is removed at the next open.
            record::write_atomic_no_dir_sync(&self.container_dir(id).join("container.json"), &rec)?;
            self.names.reserve(Kind::Container, &key, id.as_str(), |h| self.container_exists(h))?;
            Ok(source)
        });
        let source = match reserved {
            Ok(source) => source,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_dir_all(&run);
                return Err(e);
            }
        };
        let made = self.set_up_container(sbox, &source, &mut rec).and_then(|launch| {
            if wait {
                self.note_created(&mut rec, launch.wait())
            } else {
                self.keep_launch(&rec, launch);
                Ok(())
            }
        });
        match made {
            Ok(()) => {
                drop(lock);
                Ok(())
            }
            Err(e) => {
                self.tear_down_container(&rec);
                drop(lock);
                Err(e)
            }
        }
    }

    /// Everything of a creation up to its monitor's start.
    fn set_up_container(
        &self,
        sbox: &super::record::SandboxRecord,
        source: &rootfs::Source,
        rec: &mut ContainerRecord,
    ) -> Result<crate::monitor::Launch> {
        let c = rec.config.clone();
        rec.image_ref = source.image_ref();
        let signal = c
            .stop_signal
            .clone()
            .or_else(|| source.config().and_then(|i| i.config.stop_signal.clone()))
            .unwrap_or_else(|| "SIGTERM".into());
        lifecycle::parse_signal(&signal).map_err(|_| RuntimeError::invalid(format!("stop_signal {signal:?} is not a signal")))?;
        rec.stop_signal = signal;
        let dir = self.container_dir(&rec.id);
        let ro = c.security_context.readonly_rootfs;
        // Already recorded (as planned) by the first record.
        let rfs = rootfs::mount(source, &dir, &self.opts.image_root, ro)?;
        debug_assert_eq!(rec.rootfs.as_ref(), Some(&rfs));
        let root_path = rootfs::path(&rfs).to_path_buf();
        let mut c = c;
        self.mount_image_volumes(rec, &mut c.mounts)?;
        // Bind sources resolved once and held by hull's own mounts; the
        // paths are recorded before anything is mounted there.
        let staged_dir = self.container_run_dir(&rec.id).join("mounts");
        rec.staged_mounts = super::mounts::staged_paths(&c, &staged_dir);
        // Nothing to stage, nothing new to record (an fsync'd write less on
        // the CreateContainer path).
        if !rec.staged_mounts.is_empty() {
            self.save_container(rec)?;
        }
        let c = super::mounts::stage_config(c, &staged_dir)?;

        let h = sbox
            .holder
            .ok_or_else(|| RuntimeError::precondition(format!("sandbox {} has no holder", sbox.id)))?;
        let sns = &sbox.config.security_context.namespace_options;
        let mut holder_ns: HashMap<String, PathBuf> = HashMap::new();
        if sns.network == NamespaceMode::Pod {
            // The pinned netns when there is one (it cannot be a reused pid).
            let net = sbox.netns.clone().unwrap_or_else(|| PathBuf::from(holder::ns_path(&h, "net")));
            holder_ns.insert("net".into(), net);
            holder_ns.insert("uts".into(), holder::ns_path(&h, "uts").into());
        }
        if sns.ipc == NamespaceMode::Pod {
            holder_ns.insert("ipc".into(), holder::ns_path(&h, "ipc").into());
        }
        if sns.pid == NamespaceMode::Pod {
            holder_ns.insert("pid".into(), holder::ns_path(&h, "pid").into());
        }
        let target_pid_ns = match (&c.security_context.namespace_options.pid, &c.security_context.namespace_options.target_id) {
            (NamespaceMode::Target, Some(t)) => {
                let trec = self.load_container(t).map_err(|e| e.context("namespace_options.target_id"))?;
                if trec.sandbox_id != sbox.id {
                    return Err(RuntimeError::invalid(format!("namespace_options.target_id {t} is in another sandbox")));
                }
                let pid = trec
                    .pid
                    .filter(|_| trec.phase == ContainerPhase::Running)
                    .ok_or_else(|| RuntimeError::precondition(format!("namespace_options.target_id {t} is not running")))?;
                Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))
            }
            _ => None,
        };
        let m = &sbox.config.metadata;
        let mut annotations: HashMap<String, String> = c.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in [
            ("io.kubernetes.pod.name", m.name.as_str()),
            ("io.kubernetes.pod.namespace", m.namespace.as_str()),
            ("io.kubernetes.pod.uid", m.uid.as_str()),
            ("io.kubernetes.container.name", c.metadata.name.as_str()),
            ("io.kubernetes.cri.sandbox-id", sbox.id.as_str()),
        ] {
            annotations.insert(k.into(), v.into());
        }
        let etc = self.sandbox_run_dir(&sbox.id).join("etc");
        let inputs = spec::SpecInputs {
            config: &c,
            image: source.config(),
            rootfs: &root_path,
            holder_ns: &holder_ns,
            target_pid_ns,
            etc_dir: (!c.no_etc_files).then_some(etc.as_path()),
            cgroups_path: crate::cgroups::systemd::child_path(&sbox.cgroup_parent, rec.id.as_str(), sbox.config.cgroup_scopes),
            pod_user: (None, None, &[]),
            annotations,
        };
        let oci = spec::build(&inputs)?;
        let bundle = self.container_run_dir(&rec.id).join("bundle");
        std::fs::create_dir_all(&bundle).map_err(|e| io_err(format!("create {}", bundle.display()), e))?;
        record::write_run_file(&bundle.join("config.json"), &oci)?;
        if let Some(parent) = rec.log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err(format!("create {}", parent.display()), e))?;
        }
        let mspec = crate::monitor::MonitorSpec {
            state_root: self.oci_root().path.clone(),
            id: rec.id.to_string(),
            bundle,
            log_path: rec.log_path.clone(),
            exit_file: exit_path(&self.exits_dir(), &rec.id),
            hold_created: true,
        };
        let stdio = crate::monitor::attach::Stdio {
            stdin: c.stdin,
            stdin_once: c.stdin && c.stdin_once,
            tty: c.tty,
            attach_socket: Some(self.attach_socket(&rec.id)),
        };
        Ok(crate::monitor::launch_monitor_io(&mspec, &stdio, &self.opts.hull)?)
    }

    /// Record what a monitor reported: the container is Created.
    fn note_created(&self, rec: &mut ContainerRecord, report: crate::Result<crate::monitor::Spawned>) -> Result<()> {
        let spawned = report?;
        rec.pid = Some(spawned.init_pid);
        rec.pid_start_time = crate::oci::state::process_start_time(spawned.init_pid);
        rec.monitor_pid = Some(spawned.monitor_pid);
        rec.monitor_start_time = crate::oci::state::process_start_time(spawned.monitor_pid);
        rec.phase = ContainerPhase::Created;
        self.save_container(rec)
    }

    /// A launch left running (see [`Runtime::launch_container`]): its
    /// report kept for [`Self::settle_launch`].
    fn keep_launch(&self, rec: &ContainerRecord, launch: crate::monitor::Launch) {
        self.launch_table().insert(rec.id.clone(), launch);
    }

    fn launch_table(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ContainerId, crate::monitor::Launch>> {
        self.launches.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Launched and its report not read yet.
    fn launched(&self, rec: &ContainerRecord) -> bool {
        rec.phase == ContainerPhase::Creating && self.launch_table().contains_key(&rec.id)
    }

    /// Finish a launched container's creation (the caller holds its
    /// lock): its monitor's report read, the record says Created, or
    /// Exited (exit code 128, StartError) with what failed, which is also
    /// returned, and what the container held is given back. Anything
    /// else: nothing to do.
    fn settle_launch(&self, rec: &mut ContainerRecord) -> Result<()> {
        if rec.phase != ContainerPhase::Creating {
            return Ok(());
        }
        let Some(launch) = self.launch_table().remove(&rec.id) else {
            return Ok(());
        };
        let Err(e) = self.note_created(rec, launch.wait()) else {
            return Ok(());
        };
        let now = SystemTime::now();
        rec.phase = ContainerPhase::Exited;
        rec.pid = None;
        rec.finished_at = Some(now);
        rec.exit = Some(ExitRecord {
            exit_code: 128,
            signal: None,
            started_at: String::new(),
            finished_at: humantime::format_rfc3339_nanos(now).to_string(),
            oom_killed: false,
            reason: "StartError".into(),
        });
        rec.start_error = Some(e.to_string());
        let _ = self.save_container(rec);
        self.release_exited(rec);
        self.bus.publish(EventKind::Stopped, &rec.sandbox_id, Some(&rec.id));
        Err(e)
    }

    /// Read every launched container's report (see
    /// [`Runtime::launch_container`]), so that they stay Created (or say
    /// why not) for whoever opens the state directory next: for a
    /// process that is about to exit, which holds the only copy of those
    /// reports (a launch it leaves unread is undone at the next open).
    pub fn settle_launches(&self) {
        let ids: Vec<ContainerId> = self.launch_table().keys().cloned().collect();
        for id in ids {
            self.settle_launch_of(&id);
        }
    }

    /// [`Self::settle_launch`] under the container's lock, for callers
    /// that do not hold it; its failure is in the record.
    fn settle_launch_of(&self, id: &ContainerId) {
        let Ok(Some(_lock)) = record::unless_gone(record::lock(&self.container_dir(id), &format!("container {id}"))) else {
            return;
        };
        if let Ok(mut rec) = self.load_container(id) {
            let _ = self.settle_launch(&mut rec);
        }
    }

    /// Kill what runs, delete the OCI container, unmount, remove the files.
    /// Image volumes: each mount naming an image gets that image of the
    /// store mounted (an overlay over its layers, with the store's lease)
    /// in the container's state directory, recorded before it is mounted;
    /// the mount then binds it read-only (and noexec) like any host path.
    fn mount_image_volumes(&self, rec: &mut ContainerRecord, mounts: &mut [super::config::Mount]) -> Result<()> {
        for (i, m) in mounts.iter_mut().enumerate() {
            let Some(image) = m.image.clone() else { continue };
            let field = format!("mounts[{i}].image");
            let rootfs::Source::Store(src) = rootfs::resolve(&image, &field, &self.opts.image_root)? else {
                return Err(RuntimeError::invalid(format!("{field} {image:?}: an image of the store, not a directory")));
            };
            let dir = self.container_dir(&rec.id).join("image-volumes").join(i.to_string());
            let mountpoint = dir.join("rootfs");
            rec.image_volumes
                .push(RootfsRecord::Image { mountpoint: mountpoint.clone(), image_root: self.opts.image_root.clone() });
            self.save_container(rec)?;
            rootfs::mount(&rootfs::Source::Store(src), &dir, &self.opts.image_root, false)?;
            m.host_path = mountpoint;
            m.readonly = true;
        }
        Ok(())
    }

    fn tear_down_container(&self, rec: &ContainerRecord) {
        let oci = self.oci_root();
        let id = rec.id.as_str();
        if init_alive(rec) && oci.load(id).is_ok() {
            let _ = lifecycle::kill(&oci, id, Signal::SIGKILL, true);
            let _ = wait_exit(&self.exits_dir(), &rec.id, KILL_GRACE);
        }
        self.release_exited(rec);
        // The name before the record: a removal killed in between leaves a
        // record that the next one finds (a name without a record would be
        // left for good; a record without a name is still removed).
        let m = &rec.config.metadata;
        self.names
            .release(Kind::Container, &container_key(rec.sandbox_id.as_str(), &m.name, m.attempt), rec.id.as_str());
        // The exit record after the directories: removed before them, a
        // crash in between would leave a record whose exit looks lost.
        // Its listing in the sandbox last: a listed id without a directory
        // is one removed (see `prune_containers`).
        let dirs = [self.container_run_dir(&rec.id), self.container_dir(&rec.id)];
        let listing = self.listed_dir(&rec.sandbox_id).join(rec.id.as_str());
        self.reaper.remove(&dirs, &[exit_path(&self.exits_dir(), &rec.id), listing]);
    }

    /// After a power loss: list again in its sandbox every container whose
    /// record names it and the sandbox's list does not (a new container's
    /// listing is an empty file, not synced; see `list_in_sandbox`).
    /// `kept` is what [`Self::recover_container`] left in place. Called by
    /// [`Runtime::open`].
    pub(super) fn relist_containers(&self, kept: HashMap<SandboxId, Vec<ContainerId>>) {
        for (sandbox, ids) in kept {
            let Ok(Some(_lock)) = record::try_lock(&self.sandbox_dir(&sandbox), "sandbox") else {
                continue;
            };
            let Ok(mut s) = self.load_sandbox(&sandbox) else {
                continue;
            };
            let unlisted: Vec<ContainerId> = ids.into_iter().filter(|c| !s.containers.contains(c)).collect();
            if unlisted.is_empty() {
                continue;
            }
            log::warn!("sandbox {sandbox}: its record had lost {} of its containers; listed again", unlisted.len());
            s.containers.extend(unlisted);
            let _ = self.save_sandbox(&s);
        }
    }

    /// After a crash: undo a container whose creator died before it was
    /// Created. Called by [`Runtime::open`]; the sandbox of a container
    /// left in place is returned.
    pub(super) fn recover_container(&self, id: &ContainerId) -> Option<SandboxId> {
        let dir = self.container_dir(id);
        let Ok(Some(lock)) = record::try_lock(&dir, "container") else {
            return None;
        };
        // Without a record yet, the sandbox's list (which names it first)
        // is mended by the sandbox's removal.
        let what = format!("container {id}");
        let rec = record::record_or_remove(self.load_container(id), &dir, &self.container_run_dir(id), &what)?;
        if rec.phase != ContainerPhase::Creating {
            return Some(rec.sandbox_id);
        }
        log::warn!("container {id}: its creation was interrupted; removing what it made");
        self.tear_down_container(&rec);
        drop(lock);
        if let Ok(_l) = record::lock(&self.sandbox_dir(&rec.sandbox_id), "sandbox") {
            if let Ok(mut s) = self.load_sandbox(&rec.sandbox_id) {
                s.containers.retain(|c| c != id);
                let _ = self.save_sandbox(&s);
            }
        }
        None
    }

    pub fn start_container(&self, id: &ContainerId) -> Result<()> {
        let what = format!("container {id}");
        let _lock = record::lock(&self.container_dir(id), &what)?;
        let mut rec = self.load_container(id)?;
        self.settle_launch(&mut rec).map_err(|e| e.context(&what))?;
        self.refresh(&mut rec);
        if rec.phase != ContainerPhase::Created {
            return Err(RuntimeError::precondition(format!("{what} is {:?}, not created", rec.phase)));
        }
        lifecycle::start(&self.oci_root(), id.as_str()).map_err(|e| RuntimeError::from(e).context(&what))?;
        rec.phase = ContainerPhase::Running;
        rec.started_at = Some(SystemTime::now());
        self.save_container(&rec)?;
        self.bus.publish(EventKind::Started, &rec.sandbox_id, Some(id));
        Ok(())
    }

    /// Send the stop signal (the config's, the image's, or SIGTERM), wait
    /// up to `timeout` for the exit, then SIGKILL. Idempotent: an exited
    /// or removed container is success.
    pub fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.stop_containers(std::slice::from_ref(id), timeout)
    }

    /// Stop several containers at once: every stop signal first, then one
    /// shared deadline, then SIGKILL for what still runs.
    pub(super) fn stop_containers(&self, ids: &[ContainerId], timeout: Duration) -> Result<()> {
        let oci = self.oci_root();
        let mut waiting = Vec::new();
        for id in ids {
            let Some(mut rec) = record::unless_gone(self.load_container(id))? else {
                continue;
            };
            if self.launched(&rec) {
                self.settle_launch_of(id);
                let Some(settled) = record::unless_gone(self.load_container(id))? else {
                    continue;
                };
                rec = settled;
            }
            self.refresh(&mut rec);
            match rec.phase {
                ContainerPhase::Exited => continue,
                ContainerPhase::Creating if oci.load(id.as_str()).is_err() => continue,
                // Gone without an exit record (its monitor died too):
                // there is nothing left to stop.
                ContainerPhase::Created | ContainerPhase::Running if !init_alive(&rec) => continue,
                _ => {}
            }
            // A created container's init is pid 1 of its namespace and has
            // no handlers yet: only SIGKILL reaches it.
            let sig = if rec.phase == ContainerPhase::Running && !timeout.is_zero() {
                lifecycle::parse_signal(&rec.stop_signal).unwrap_or(Signal::SIGTERM)
            } else {
                Signal::SIGKILL
            };
            let _ = lifecycle::kill(&oci, id.as_str(), sig, sig == Signal::SIGKILL);
            waiting.push(id.clone());
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut unstopped = Vec::new();
        for id in &waiting {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if wait_exit(&self.exits_dir(), id, left)?.is_none() {
                let _ = lifecycle::kill(&oci, id.as_str(), Signal::SIGKILL, true);
                if wait_exit(&self.exits_dir(), id, KILL_GRACE)?.is_none() {
                    unstopped.push(id.to_string());
                }
            }
            self.note_exit(id);
        }
        if !unstopped.is_empty() {
            return Err(RuntimeError::internal(format!("containers {} did not exit after SIGKILL", unstopped.join(", "))));
        }
        Ok(())
    }

    /// Remove a container (killed first if it runs) with its rootfs and
    /// records. Idempotent. The sandbox's list keeps the id until its
    /// next save prunes it (see `prune_containers`).
    pub fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.remove_container_locked(id)
    }

    /// The removal itself; the sandbox's lock may be held by the caller.
    pub(super) fn remove_container_locked(&self, id: &ContainerId) -> Result<()> {
        self.stop_containers(std::slice::from_ref(id), Duration::ZERO)?;
        let Some(lock) = record::unless_gone(record::lock(&self.container_dir(id), &format!("container {id}")))? else {
            return Ok(());
        };
        let Some(rec) = record::unless_gone(self.load_container(id))? else {
            return Ok(());
        };
        self.tear_down_container(&rec);
        drop(lock);
        self.bus.publish(EventKind::Deleted, &rec.sandbox_id, Some(id));
        Ok(())
    }

    fn status_of_container(&self, rec: ContainerRecord) -> ContainerStatus {
        self.observe_container(rec, |rec| (init_alive(rec), monitor_alive(rec)))
    }

    /// A record's status, from `liveness` (init, monitor) and then its exit
    /// record. In that order: a monitor writes the exit record before it
    /// exits, so one found gone has left it for the refresh after. (Read
    /// the other way round, a container ending between the two looked
    /// Unknown, its monitor "gone without an exit record".)
    fn observe_container(&self, mut rec: ContainerRecord, liveness: impl FnOnce(&ContainerRecord) -> (bool, bool)) -> ContainerStatus {
        // An init that has just ended while its monitor lives: the exit
        // record is being written; the container is not Unknown.
        let (alive, monitor) = liveness(&rec);
        let launched = self.launched(&rec);
        self.refresh(&mut rec);
        let state = match rec.phase {
            // Its monitor's report not read yet (see `launch_container`).
            ContainerPhase::Creating if launched => ContainerState::Created,
            ContainerPhase::Creating => ContainerState::Unknown,
            ContainerPhase::Created if alive || monitor => ContainerState::Created,
            ContainerPhase::Running if alive || monitor => ContainerState::Running,
            ContainerPhase::Exited => ContainerState::Exited,
            // Neither running nor an exit record: the monitor is gone.
            _ => ContainerState::Unknown,
        };
        let exit = rec.exit.as_ref();
        ContainerStatus {
            id: rec.id.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            metadata: rec.config.metadata.clone(),
            state,
            created_at: rec.created_at,
            started_at: rec.started_at,
            finished_at: rec.finished_at,
            exit_code: exit.map(|e| e.exit_code),
            reason: exit.map(|e| e.reason.clone()).unwrap_or_default(),
            message: if let Some(e) = &rec.start_error {
                e.clone()
            } else if state == ContainerState::Unknown && rec.phase != ContainerPhase::Creating {
                "the container's monitor is gone without an exit record".into()
            } else {
                String::new()
            },
            image: rec.config.image.image.clone(),
            image_ref: rec.image_ref.clone(),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            log_path: rec.log_path.clone(),
            pid: rec.pid.filter(|_| alive),
            resources: rec.resources.clone(),
            mounts: rec.config.mounts.clone(),
        }
    }

    pub fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        Ok(self.status_of_container(self.load_container(id)?))
    }

    pub fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        let mut out = Vec::new();
        for id in record::ids_in(&self.opts.state_dir.join("containers"), ContainerId::parse) {
            if filter.id.as_ref().is_some_and(|f| *f != id) {
                continue;
            }
            let Ok(rec) = self.load_container(&id) else {
                continue;
            };
            if filter.sandbox_id.as_ref().is_some_and(|s| *s != rec.sandbox_id) {
                continue;
            }
            let st = self.status_of_container(rec);
            if filter.state.is_some_and(|s| s != st.state) {
                continue;
            }
            if !record::labels_match(&filter.label_selector, &st.labels) {
                continue;
            }
            out.push(st);
        }
        Ok(out)
    }

    /// The id holding a container name in a sandbox, if any.
    pub fn find_container(&self, sandbox: &SandboxId, name: &str, attempt: u32) -> Result<Option<ContainerId>> {
        Ok(self
            .names
            .lookup(Kind::Container, &container_key(sandbox.as_str(), name, attempt))
            .and_then(|id| ContainerId::parse(&id).ok())
            .filter(|id| self.container_exists(id.as_str())))
    }

    /// A container that is created or running (for exec, update, logs).
    pub(super) fn live_container(&self, id: &ContainerId) -> Result<ContainerRecord> {
        let st = self.container_status(id)?;
        if !matches!(st.state, ContainerState::Created | ContainerState::Running) {
            return Err(RuntimeError::precondition(format!("container {id} is {:?}", st.state)));
        }
        self.load_container(id)
    }

    /// Change a created or running container's cgroup limits.
    pub fn update_resources(&self, id: &ContainerId, resources: &LinuxResources) -> Result<()> {
        let what = format!("container {id}");
        let _lock = record::lock(&self.container_dir(id), &what)?;
        self.settle_launch(&mut self.load_container(id)?).map_err(|e| e.context(&what))?;
        let mut rec = self.live_container(id)?;
        let patch = spec::oci_resources(resources, oci_spec::runtime::LinuxResources::default())?;
        crate::oci::update::update(&self.oci_root(), id.as_str(), &patch).map_err(|e| RuntimeError::from(e).context(&what))?;
        rec.resources = Some(resources.clone());
        self.save_container(&rec)
    }

    /// Pidfds of the container's monitor and init, those of them that
    /// still run (each checked, once open, to be the recorded process): a
    /// caller polls them to learn at once that a container ended, even one
    /// whose monitor died and so writes no exit record. Empty when neither
    /// runs (or the kernel has no pidfds).
    pub fn container_pidfds(&self, id: &ContainerId) -> Result<Vec<std::os::fd::OwnedFd>> {
        let rec = self.load_container(id)?;
        let mut fds = Vec::new();
        for (pid, start) in [(rec.monitor_pid, rec.monitor_start_time), (rec.pid, rec.pid_start_time)] {
            let (Some(pid), Some(start)) = (pid, start) else { continue };
            if let Some(fd) = crate::linux::syscall::pidfd_open(pid) {
                // Opened first, checked after: a pid reused before the open
                // shows another start time, and the fd is dropped.
                if crate::oci::state::process_start_time(pid) == Some(start) {
                    fds.push(fd);
                }
            }
        }
        Ok(fds)
    }

    /// The OCI spec a container was created with (its bundle's
    /// config.json, kept until removal); None when it has none.
    pub fn container_spec(&self, id: &ContainerId) -> Option<serde_json::Value> {
        use std::io::Read;
        let f = std::fs::File::open(self.container_run_dir(id).join("bundle").join("config.json")).ok()?;
        let mut data = Vec::new();
        f.take(16 << 20).read_to_end(&mut data).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Make the monitor reopen the container's log file (after rotation).
    pub fn reopen_log(&self, id: &ContainerId) -> Result<()> {
        let rec = self.live_container(id)?;
        let Some(pid) = rec.monitor_pid else {
            return Err(RuntimeError::precondition(format!("container {id} has no monitor")));
        };
        if !monitor_alive(&rec) {
            return Err(RuntimeError::precondition(format!("the monitor of container {id} is gone")));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGUSR1)
            .map_err(|e| io_err(format!("signal the monitor of container {id}"), e.into()))
    }

    pub fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let _ = self.load_container(id)?;
        // An exited container's cgroup went with its exit (`release_exited`).
        let oci = self.oci_root().load(id.as_str()).map_err(|e| match e {
            crate::Error::NotFound(_) => RuntimeError::precondition(format!("container {id} is not running: it has no cgroup")),
            e => RuntimeError::from(e).context(format!("container {id}")),
        })?;
        let cg = oci.cgroup.ok_or_else(|| RuntimeError::precondition(format!("container {id} has no cgroup")))?;
        Ok(stats_of(id.as_str(), &cg))
    }

    pub fn list_container_stats(&self, filter: &ContainerFilter) -> Result<Vec<ContainerStats>> {
        Ok(self
            .list_containers(filter)?
            .into_iter()
            .filter(|c| matches!(c.state, ContainerState::Created | ContainerState::Running))
            .filter_map(|c| self.container_stats(&c.id).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::RuntimeOptions;
    use super::*;

    fn running_record(rt: &Runtime) -> ContainerRecord {
        ContainerRecord {
            id: ContainerId::generate().unwrap(),
            sandbox_id: SandboxId::generate().unwrap(),
            config: ContainerConfig::default(),
            phase: ContainerPhase::Running,
            created_at: SystemTime::now(),
            started_at: Some(SystemTime::now()),
            exit: None,
            finished_at: None,
            image_ref: String::new(),
            rootfs: None,
            log_path: rt.opts.run_dir.join("c.log"),
            pid: Some(i32::MAX),
            pid_start_time: Some(1),
            monitor_pid: Some(i32::MAX),
            monitor_start_time: Some(1),
            stop_signal: "SIGTERM".into(),
            resources: None,
            staged_mounts: Vec::new(),
            image_volumes: Vec::new(),
            start_error: None,
        }
    }

    /// A container whose monitor writes its exit record and exits while
    /// its status is being taken is Exited with that record, not Unknown.
    #[test]
    fn an_exit_while_the_status_is_taken_is_exited_not_unknown() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = Runtime::open(RuntimeOptions::new(tmp.path().join("state"), tmp.path().join("run"))).unwrap();
        let rec = running_record(&rt);
        let exits = rt.exits_dir();
        let st = rt.observe_container(rec.clone(), |r| {
            let exit = ExitRecord::from_status(nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(1), 3), String::new(), false);
            exit.save(&exit_path(&exits, &r.id)).unwrap();
            (false, false)
        });
        assert_eq!(st.state, ContainerState::Exited, "{st:?}");
        assert_eq!(st.exit_code, Some(3));
        assert!(st.message.is_empty(), "{st:?}");
        // With neither a process nor an exit record it is Unknown, and says why.
        let other = running_record(&rt);
        let st = rt.observe_container(other, |_| (false, false));
        assert_eq!(st.state, ContainerState::Unknown);
        assert!(st.message.contains("monitor is gone"), "{st:?}");
        // A live monitor whose init has just ended: still Running.
        let st = rt.observe_container(running_record(&rt), |_| (false, true));
        assert_eq!(st.state, ContainerState::Running);
    }

    /// A launched container is Created to its callers until its monitor
    /// reports; a monitor that fails (here one that exits at once without
    /// a word) fails the start, and the container ends Exited with exit
    /// code 128 and the reason StartError, saying why; a stop after
    /// succeeds (nothing runs) and a second start is refused.
    #[test]
    fn a_failed_launch_is_the_starts_error() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = Runtime::open(RuntimeOptions::new(tmp.path().join("state"), tmp.path().join("run"))).unwrap();
        let mut rec = running_record(&rt);
        (rec.phase, rec.pid, rec.started_at) = (ContainerPhase::Creating, None, None);
        drop(record::create_object_dir(&rt.container_dir(&rec.id), "container").unwrap());
        rt.save_container(&rec).unwrap();
        assert_eq!(rt.container_status(&rec.id).unwrap().state, ContainerState::Unknown, "a creation nobody launched");
        let spec = crate::monitor::MonitorSpec {
            state_root: tmp.path().join("oci"),
            id: rec.id.to_string(),
            bundle: tmp.path().join("bundle"),
            log_path: rec.log_path.clone(),
            exit_file: exit_path(&rt.exits_dir(), &rec.id),
            hold_created: true,
        };
        let launch = crate::monitor::launch_monitor_io(&spec, &Default::default(), std::path::Path::new("/bin/true")).unwrap();
        rt.keep_launch(&rec, launch);
        let st = rt.container_status(&rec.id).unwrap();
        assert_eq!(st.state, ContainerState::Created, "{st:?}");
        let e = rt.start_container(&rec.id).unwrap_err();
        assert!(e.to_string().contains("without a result"), "{e}");
        let st = rt.container_status(&rec.id).unwrap();
        assert_eq!((st.state, st.exit_code, st.reason.as_str()), (ContainerState::Exited, Some(128), "StartError"), "{st:?}");
        assert!(st.message.contains("without a result") && st.finished_at.is_some(), "{st:?}");
        rt.stop_container(&rec.id, Duration::ZERO).unwrap();
        assert_eq!(rt.start_container(&rec.id).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    }

    /// A sandbox record that lost the listing of a container (saved
    /// without a directory sync, then a power loss) lists it again once
    /// the runtime opens.
    #[test]
    fn containers_a_sandbox_lost_are_listed_again_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RuntimeOptions::new(tmp.path().join("state"), tmp.path().join("run"));
        let rt = Runtime::open(opts.clone()).unwrap();
        let mut rec = running_record(&rt);
        (rec.phase, rec.pid, rec.monitor_pid) = (ContainerPhase::Exited, None, None);
        let sandbox = super::super::record::SandboxRecord {
            id: rec.sandbox_id.clone(),
            config: Default::default(),
            phase: SandboxPhase::Stopped,
            created_at: SystemTime::now(),
            holder: None,
            netns: None,
            network: None,
            ips: Vec::new(),
            cgroup_parent: String::new(),
            cgroup: None,
            holder_cgroup: None,
            log_directory: tmp.path().join("logs"),
            containers: Vec::new(),
        };
        drop(record::create_object_dir(&rt.sandbox_dir(&sandbox.id), "sandbox").unwrap());
        rt.save_sandbox(&sandbox).unwrap();
        drop(record::create_object_dir(&rt.container_dir(&rec.id), "container").unwrap());
        rt.save_container(&rec).unwrap();
        drop(rt);
        let rt = Runtime::open(opts).unwrap();
        assert_eq!(rt.load_sandbox(&sandbox.id).unwrap().containers, [rec.id.clone()]);
        assert_eq!(rt.container_status(&rec.id).unwrap().state, ContainerState::Exited);
    }

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        for ok in ["c/0.log", "x.log"] {
            assert!(check_log_path(ok).is_ok(), "{ok}");
        }
        for bad in ["/etc/x", "../x", "a/../../b", "a//b", ""] {
            assert!(check_log_path(bad).is_err(), "{bad}");
        }
    }
}
