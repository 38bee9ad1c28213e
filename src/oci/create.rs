//! `create`: from a bundle to a container whose init waits for `start`.
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::config::{new_namespace, Bundle};
use super::hooks::{self, HookKind};
use super::state::{process_start_time, ContainerRecord, StateRoot, Status, EXEC_FIFO};
use crate::cgroups::{devices, Cgroup};
use crate::error::{Error, Result, SysContext};
use crate::linux::channel::{Channel, ChildMessage, ParentMessage};
use crate::linux::init::{self, InitContext};
use crate::linux::namespaces::NamespacePlan;
use crate::linux::syscall::{fork, Forked};
use oci_spec::runtime::LinuxNamespaceType;

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
    /// `--systemd-cgroup`: linux.cgroupsPath is `slice:prefix:name`,
    /// mapped onto cgroupfs (see [`crate::cgroups::systemd`]).
    pub systemd_cgroup: bool,
    /// The bundle, when the caller has loaded it already (the CLI does, to
    /// decide how to guard the host binary: see linux::dmz).
    pub loaded: Option<Bundle>,
}

/// Undoes a half-made container when create fails: kills what was forked,
/// removes the cgroup and the state directory.
struct Rollback {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pids: Vec<Pid>,
    /// Interfaces moved in: back to the host before the namespace goes.
    net_devices: Vec<crate::linux::netdev::Moved>,
    armed: bool,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        crate::linux::netdev::move_out(&self.net_devices, &self.dir);
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
        }
        for pid in &self.pids {
            super::wait::wait_gone(pid.as_raw(), std::time::Duration::from_secs(5));
        }
        if let Some(cg) = &self.cgroup {
            if let Err(e) = cg.remove() {
                log::warn!("rollback: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Create the container. `console` is an already connected console socket
/// (from --console-socket, or `run`'s own for a foreground terminal).
pub fn create(root: &StateRoot, opts: &CreateOptions, console: Option<OwnedFd>) -> Result<ContainerRecord> {
    let loaded;
    let bundle = match &opts.loaded {
        Some(b) => b,
        None => {
            loaded = Bundle::load(&opts.bundle)?;
            &loaded
        }
    };
    let spec = &bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    let terminal = process.terminal().unwrap_or(false);
    if terminal && console.is_none() && opts.console_socket.is_none() {
        return Err(Error::InvalidArgument("process.terminal is true: a --console-socket is needed to receive the pty".into()));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::InvalidArgument("--console-socket given but process.terminal is false".into()));
    }
    let plan = NamespacePlan::from_spec(spec)?;
    let console = match (console, &opts.console_socket) {
        (Some(c), _) => Some(c),
        (None, Some(path)) => Some(crate::linux::console::connect(path)?),
        (None, None) => None,
    };
    let dir = root.claim(&opts.id)?;
    let mut rollback = Rollback { dir: dir.clone(), cgroup: None, pids: Vec::new(), net_devices: Vec::new(), armed: true };

    let linux = spec.linux().as_ref();
    let given = linux.and_then(|l| l.cgroups_path().as_deref());
    let cgroup = Cgroup::create(cgroups_path(given, &opts.id, opts.systemd_cgroup, root)?.as_deref(), &opts.id)?;
    rollback.cgroup = Some(cgroup.clone());
    check_cgroup_unused(&cgroup, &opts.id, given.is_none())?;
    // Limits hold before any process of the container exists: the
    // bootstrap child is forked (and moved into the cgroup) after this.
    if let Some(resources) = linux.and_then(|l| l.resources().as_ref()) {
        cgroup.apply_resources(resources)?;
    }
    // A FIFO ("p") is no device to the devices cgroup, which has only
    // a/b/c rules: it is made in /dev with no rule.
    let device_rules: Vec<devices::Rule> = linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .filter(|d| d.typ() != oci_spec::runtime::LinuxDeviceType::P)
        .map(|d| devices::allow_device(d.typ().as_str().chars().next().unwrap_or('c'), d.major(), d.minor()))
        .collect();
    cgroup.apply_devices(linux.and_then(|l| l.resources().as_ref()), &device_rules)?;

    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622)).sys_context(|| "create exec fifo".into())?;
    if plan.new_user {
        // The init opens the fifo as the container's root, which is some
        // other uid on the host.
        let (uid, gid) = root_ids_on_host(spec);
        nix::unistd::chown(&fifo, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
            .sys_context(|| "chown exec fifo".into())?;
    }

    let listener_path = linux.and_then(|l| l.seccomp().as_ref()).and_then(|s| s.listener_path().as_deref());
    let seccomp_listener = listener_path.map(crate::seccomp::connect_listener).transpose()?;
    let (ours, theirs) = Channel::pair()?;
    let ctx = InitContext {
        id: &opts.id,
        bundle: &bundle.dir,
        rootfs: &bundle.rootfs,
        spec,
        cgroup: Some(&cgroup),
        channel: &theirs,
        exec_fifo: &fifo,
        console_socket: console.as_ref(),
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds,
        new_session_keyring: !opts.no_new_keyring,
        new_user_ns: plan.new_user,
        new_cgroup_ns: new_namespace(spec, LinuxNamespaceType::Cgroup),
        mount_ns: super::config::namespace_types(spec).contains(&LinuxNamespaceType::Mount),
        seccomp_listener: seccomp_listener.as_ref(),
        idmapped: &[],
        placed_during_mounts: plan.init_placed_during_mounts(cgroup.layout == crate::cgroups::Layout::V1),
    };
    if process.exec_cpu_affinity().is_some() {
        log::warn!("process.execCPUAffinity applies to processes started by exec (runtime-spec), not to the container's init");
    }
    // With the init placed during its mounts, the bootstrap stays until
    // this pipe's write end is closed (it cannot wait on the channel, which
    // the init reads too by then).
    let hold = ctx
        .placed_during_mounts
        .then(|| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC))
        .transpose()
        .sys_context(|| "pipe".into())?;
    let bootstrap = match fork()? {
        Forked::Child => {
            drop(ours);
            let hold = hold.map(|(read, write)| {
                drop(write);
                read
            });
            bootstrap(&ctx, &plan, hold)
        }
        Forked::Parent(pid) => pid,
    };
    let mut hold = hold.map(|(_, write)| write);
    drop(theirs);
    drop(console);
    drop(seccomp_listener);
    rollback.pids.push(bootstrap);
    // The first migration waits out an RCU grace period (see bootstrap):
    // the bootstrap makes the namespaces meanwhile, and in the plain case
    // has forked the init, which builds the rootfs.
    cgroup.add_pid(bootstrap.as_raw())?;
    if hold.is_none() {
        ours.send(&ParentMessage::Proceed)?;
    }

    let mut record = ContainerRecord {
        id: opts.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: 0,
        pid_start_time: 0,
        created: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        owner: String::new(),
        cgroup: Some(cgroup.clone()),
        config: spec.clone(),
        oom_killed: None,
        net_devices: Vec::new(),
    };
    loop {
        let msg = ours.recv::<ChildMessage>()?.ok_or_else(|| init_died(spec, &cgroup))?;
        match msg {
            ChildMessage::WriteIdMaps { pid } => {
                write_id_maps(pid, spec)?;
                ours.send(&ParentMessage::IdMapsWritten)?;
            }
            ChildMessage::InitForked { pid } => {
                rollback.pids.push(Pid::from_raw(pid));
                let started = (|| -> Result<()> {
                    if hold.is_some() {
                        // Forked before or after the bootstrap's migration:
                        // placed now either way (this write is quick, the
                        // grace period is over), before it may fork or exec.
                        cgroup.add_pid(pid)?;
                        drop(hold.take());
                    }
                    // The bootstrap is reaped once the init is ready, not
                    // here: its exit (with `hold`, only now) would delay Start.
                    record.pid = pid;
                    record.pid_start_time = process_start_time(pid).ok_or_else(|| Error::Init("container init died at birth".into()))?;
                    // The init is in the container's network namespace
                    // already (the bootstrap unshared it): move the
                    // interfaces in before it sets up, so hooks and the
                    // program see them.
                    record.net_devices = crate::linux::netdev::move_in(spec, pid, &dir)?;
                    rollback.net_devices = record.net_devices.clone();
                    ours.send(&ParentMessage::Start { host_pid: pid })
                })();
                if let Err(e) = started {
                    return Err(init_report_or(&ours, Pid::from_raw(pid), bootstrap, hold.take(), e, spec, &cgroup));
                }
            }
            ChildMessage::RunCreateRuntimeHooks => {
                // runtime-spec: prestart (deprecated) and createRuntime hooks
                // run in the runtime's namespaces after the environment is
                // made and before pivot_root. The lifecycle places them after
                // step 2, which the spec defines as "created", so their
                // state says created (as runc's does).
                let state = record.spec_state(Status::Created);
                let h = spec.hooks().as_ref();
                hooks::run_all(HookKind::Prestart, h.and_then(|h| h.prestart().as_ref()), &state)?;
                hooks::run_all(HookKind::CreateRuntime, h.and_then(|h| h.create_runtime().as_ref()), &state)?;
                ours.send(&ParentMessage::CreateRuntimeHooksDone)?;
            }
            ChildMessage::InitReady => {
                // Gone before `create` returns, so that the init's parent is
                // the caller's subreaper by then.
                let _ = nix::sys::wait::waitpid(bootstrap, None);
                break;
            }
            ChildMessage::Failed(r) => return Err(Error::from_remote(r).with_context("container init failed")),
            ChildMessage::ExecReady => return Err(Error::Init("unexpected exec message".into())),
        }
    }
    root.save(&record)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, record.pid)?;
    }
    rollback.armed = false;
    Ok(record)
}

/// A container's cgroup is its own: one that already has processes is
/// refused (as runc 1.2 does; 1.1 warns and shares it), and so is an
/// existing one at a default path, which another container made (of the
/// same id under the default root, or a runc or crun container at `/<id>`),
/// running or stopped: sharing it would let one change the other's limits,
/// and a `delete --force` of one kill the other. Only hull's own new
/// directories are removed again when this refuses.
fn check_cgroup_unused(cgroup: &Cgroup, id: &str, default_path: bool) -> Result<()> {
    for dir in cgroup.dirs.values() {
        // Made just now (`make` refuses a leaf someone made meanwhile):
        // empty, nothing to read.
        if cgroup.created.contains(dir) {
            continue;
        }
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let n = procs.lines().filter(|l| !l.trim().is_empty()).count();
        if n > 0 {
            return Err(Error::Cgroup(format!("{} already has {n} process(es): it belongs to another container", dir.display())));
        }
        if default_path {
            return Err(Error::Cgroup(format!(
                "{} already exists: another container {id:?} (under another --root?) owns it; use another id or set linux.cgroupsPath",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The init forked and could not be started: when it builds the rootfs
/// before it is started (`hold`), it may have failed on its own already
/// (a missing mount source), and its report says why better than what its
/// death did to the parent. Stop it and its bootstrap, then take that
/// report if there is one.
fn init_report_or(
    ours: &Channel,
    init: Pid,
    bootstrap: Pid,
    hold: Option<OwnedFd>,
    err: Error,
    spec: &oci_spec::runtime::Spec,
    cgroup: &Cgroup,
) -> Error {
    let _ = nix::sys::signal::kill(init, nix::sys::signal::Signal::SIGKILL);
    drop(hold);
    let _ = nix::sys::wait::waitpid(bootstrap, None);
    match ours.recv::<ChildMessage>() {
        Ok(Some(ChildMessage::Failed(r))) => Error::from_remote(r).with_context("container init failed"),
        // Killed without a word: by the OOM killer, if the memory limit
        // is what it died of.
        Ok(None) if cgroup.oom_kill_count().is_some_and(|n| n > 0) => init_died(spec, cgroup),
        _ => err,
    }
}

/// Why the init ended before it was ready, as far as the parent can tell:
/// an OOM kill names the memory limit that caused it (as runc does).
fn init_died(spec: &oci_spec::runtime::Spec, cgroup: &Cgroup) -> Error {
    if cgroup.oom_kill_count().is_some_and(|n| n > 0) {
        let limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit());
        let what = match limit {
            Some(l) => format!("linux.resources.memory.limit ({l} bytes) is too low for it to start"),
            None => "the cgroup's memory limit is too low for it to start".to_string(),
        };
        return Error::resource("linux.resources.memory.limit", format!("container init was OOM-killed during setup: {what}"));
    }
    Error::Init("container init exited during setup".into())
}

/// The cgroup path to create: the config's (None: `/<id>`, see
/// `cgroups::relative_path`), or with `--systemd-cgroup` its
/// `slice:prefix:name` mapped onto cgroupfs. Without a cgroupsPath, the
/// default root keeps runc's `/<id>` (where runc users look) and any other
/// root gets `/<its tag>-<id>`, so the same id under two roots gets two
/// cgroups, one directory per hierarchy as runc's and crun's (no parent
/// per root: it would be two more mkdir and rmdir in every hierarchy for
/// each container); with `--systemd-cgroup` the tag is the unit prefix
/// (`system.slice:<tag>:<id>`, `hull` for the default root). The root's
/// tag is only worked out when it is needed.
fn cgroups_path(path: Option<&Path>, id: &str, systemd: bool, root: &StateRoot) -> Result<Option<PathBuf>> {
    match (path, systemd) {
        (Some(p), false) => Ok(Some(p.to_path_buf())),
        (Some(p), true) => {
            let text = p.to_str().ok_or_else(|| Error::Config("linux.cgroupsPath: not valid UTF-8".into()))?;
            crate::cgroups::systemd::to_cgroupfs(text).map(Some)
        }
        (None, false) => Ok(root.cgroup_tag()?.map(|tag| PathBuf::from(format!("/{tag}-{id}")))),
        (None, true) => {
            let tag = root.cgroup_tag()?;
            let text = crate::cgroups::systemd::default_path(tag.as_deref().unwrap_or("hull"), id);
            crate::cgroups::systemd::to_cgroupfs(&text).map(Some)
        }
    }
}

/// The bootstrap child: enters/creates the namespaces, forks the init
/// (which is then pid 1 of a new pid namespace) and exits.
///
/// `hold` (the plain case, [`NamespacePlan::init_placed_during_mounts`]):
/// the init is forked at once, before the parent has placed anything, and
/// builds the rootfs while the parent's first cgroup.procs write waits; the
/// parent places it once it knows its pid, and the init waits for that
/// (`Start`) before it forks or runs anything of the container. The
/// bootstrap then stays until the parent closes `hold`'s other end, so that
/// the parent's write for it finds it.
fn bootstrap(ctx: &InitContext, plan: &NamespacePlan, hold: Option<OwnedFd>) -> ! {
    let result = (|| -> Result<()> {
        // Idmapping needs the host's privilege over the source filesystem:
        // clone and map the trees first, before any unshare or setns (the
        // helper forked for each mapping must not land in a new pid
        // namespace, whose pid 1 it would become and whose end its exit
        // would be). An error waits for the parent's next message, which
        // it sends regardless.
        let idmapped = if ctx.mount_ns { crate::linux::idmap::prepare(ctx.spec, ctx.bundle) } else { Ok(Vec::new()) };
        // The parent's cgroup.procs write for us waits out an RCU grace
        // period (the first migration of a thread group): meanwhile make
        // the new namespaces, which is most of the rest of this process's
        // work. Only the plain case (no user namespace, nothing joined),
        // where the order of unshare and setns cannot matter. Not the
        // cgroup namespace: its root is the cgroup of whoever unshares it,
        // so that waits until the process is in the container's. Nothing of
        // the container runs before the init, which starts inside the
        // cgroup (forked below once the parent says we are in it) or is
        // placed before it forks or execs (with `hold`).
        let early = match plan.plain() {
            true => plan.unshare - CloneFlags::CLONE_NEWCGROUP,
            false => CloneFlags::empty(),
        };
        if !early.is_empty() {
            nix::sched::unshare(early).sys_context(|| format!("unshare {early:?}"))?;
        }
        if let Some(hold) = hold {
            // The cgroup namespace (left out of `early`) is the init's to
            // make, once it is placed (init::prepare).
            let idmapped = idmapped?;
            let ctx = &InitContext { idmapped: &idmapped, ..*ctx };
            return fork_init(ctx).and_then(|()| wait_released(&hold));
        }
        match ctx.channel.expect::<ParentMessage>("cgroup placement")? {
            ParentMessage::Proceed => {}
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
        let idmapped = idmapped?;
        let ctx = &InitContext { idmapped: &idmapped, ..*ctx };
        plan.join_all(true)?;
        if plan.new_user {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).sys_context(|| "unshare user namespace".into())?;
            ctx.channel.send(&ChildMessage::WriteIdMaps { pid: std::process::id() as i32 })?;
            match ctx.channel.expect::<ParentMessage>("id maps")? {
                ParentMessage::IdMapsWritten => {}
                other => return Err(Error::Init(format!("unexpected message {other:?}"))),
            }
        }
        if plan.new_user || plan.joins_user() {
            let root_uid = nix::unistd::Uid::from_raw(0);
            let root_gid = nix::unistd::Gid::from_raw(0);
            nix::unistd::setresgid(root_gid, root_gid, root_gid).sys_context(|| "become root in user namespace".into())?;
            nix::unistd::setresuid(root_uid, root_uid, root_uid).sys_context(|| "become root in user namespace".into())?;
        }
        plan.join_all(false)?;
        let late = plan.unshare - early;
        if !late.is_empty() {
            nix::sched::unshare(late).sys_context(|| format!("unshare {late:?}"))?;
        }
        fork_init(ctx)
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let _ = ctx.channel.send(&ChildMessage::Failed(e.to_remote()));
            std::process::exit(1)
        }
    }
}

/// Fork the init (the first process of a new pid or time namespace) and
/// tell the parent its pid.
fn fork_init(ctx: &InitContext) -> Result<()> {
    // A new time namespace takes its clock offsets before any process is
    // in it: the init forked next is its first member.
    if let Some(offsets) = crate::linux::attrs::time_offsets(ctx.spec.linux().as_ref())? {
        std::fs::write("/proc/self/timens_offsets", offsets).sys_context(|| "linux.timeOffsets: write /proc/self/timens_offsets".into())?;
    }
    match fork()? {
        Forked::Child => init::run(ctx),
        Forked::Parent(pid) => ctx.channel.send(&ChildMessage::InitForked { pid: pid.as_raw() }),
    }
}

/// Block until the parent closes its end of `hold` (or dies).
fn wait_released(hold: &OwnedFd) -> Result<()> {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(hold, &mut byte) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).sys_context(|| "wait for the parent".into()),
        }
    }
}

/// The host uid and gid that the container's root maps to.
fn root_ids_on_host(spec: &oci_spec::runtime::Spec) -> (u32, u32) {
    let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter().flatten().find(|m| m.container_id() == 0).map_or(0, |m| m.host_id())
    };
    let linux = spec.linux().as_ref();
    (find(linux.and_then(|l| l.uid_mappings().as_ref())), find(linux.and_then(|l| l.gid_mappings().as_ref())))
}

fn write_id_maps(pid: i32, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated");
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.uid_mappings().as_ref());
    let gid = fmt(linux.gid_mappings().as_ref());
    std::fs::write(format!("/proc/{pid}/uid_map"), uid).sys_context(|| "write uid_map".into())?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gid).sys_context(|| "write gid_map".into())?;
    Ok(())
}

/// Write the pid file atomically, as runc does (containerd reads it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = std::path::absolute(path).sys_context(|| format!("pid file {}", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")));
    std::fs::write(&tmp, pid.to_string()).sys_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).sys_context(|| format!("rename to {}", path.display()))
}
