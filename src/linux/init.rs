//! The container's init: the process that becomes the user's program.
//! It runs in the new namespaces, builds the rootfs, reports readiness, waits
//! for `start` on the exec fifo, drops privileges and execs.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use super::channel::{Channel, ChildMessage, ParentMessage};
use super::{attrs, console, lsm, process, rootfs, syscall, sysctl};
use crate::cgroups::Cgroup;
use crate::error::{Error, Result, SysContext};
use crate::oci::hooks::{self, HookKind};
use crate::oci::state::{SpecState, Status, OCI_VERSION};
use crate::seccomp::{self, Filter};

/// What the init needs from hull (a copy made by fork).
pub struct InitContext<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub spec: &'a Spec,
    pub cgroup: Option<&'a Cgroup>,
    pub channel: &'a Channel,
    pub exec_fifo: &'a Path,
    pub console_socket: Option<&'a OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    pub new_session_keyring: bool,
    pub new_user_ns: bool,
    pub new_cgroup_ns: bool,
    /// The container has a mount namespace (new or joined). Without one it
    /// shares the host's mount table: nothing is mounted, the init only
    /// chroots into the rootfs.
    pub mount_ns: bool,
    /// The connection to linux.seccomp.listenerPath, made by hull.
    pub seccomp_listener: Option<&'a OwnedFd>,
    /// The idmapped trees, one slot per entry of `mounts` (linux::idmap).
    pub idmapped: &'a [Option<OwnedFd>],
    /// The init is forked before it is in the container's cgroup and builds
    /// the rootfs while the parent places it (see `oci::create`): it waits
    /// for `Start`, sent once it is placed, after the mounts instead of
    /// before them, and then makes the new cgroup namespace (if any) itself,
    /// rooted at the cgroup it is now in. Nothing it does before that forks
    /// or runs container code.
    pub placed_during_mounts: bool,
}

/// What is left to do once `start` releases the init.
struct Prepared {
    program: PathBuf,
    env: Vec<String>,
    fifo: OwnedFd,
    proc_fd_dir: OwnedFd,
    host_pid: i32,
    seccomp: Option<Filter>,
    listener: Option<seccomp::Listener>,
}

/// Run the init. Never returns: it execs the program or exits non-zero.
pub fn run(ctx: &InitContext) -> ! {
    let prepared = match prepare(ctx) {
        Ok(p) => p,
        Err(e) => {
            let _ = ctx.channel.send(&ChildMessage::Failed(e.to_remote()));
            std::process::exit(1);
        }
    };
    // From here on hull's create has returned: errors go to the container's
    // stderr, as runc's do.
    let err = start_program(ctx, prepared);
    crate::logging::eprint_line(crate::logging::LogFormat::Text, log::Level::Error, &format!("container init: {err}"));
    std::process::exit(127);
}

/// The parent's go-ahead: the init is in its cgroup, the interfaces are
/// in its network namespace; with our pid on the host.
fn await_start(ctx: &InitContext) -> Result<i32> {
    match ctx.channel.expect::<ParentMessage>("start of init")? {
        ParentMessage::Start { host_pid } => Ok(host_pid),
        other => Err(Error::Init(format!("unexpected message {other:?}"))),
    }
}

fn prepare(ctx: &InitContext) -> Result<Prepared> {
    let early_start = if ctx.placed_during_mounts { None } else { Some(await_start(ctx)?) };
    nix::unistd::setsid().sys_context(|| "setsid".into())?;
    // Other processes in the container must not ptrace us or open our /proc
    // files (and with them hull's fds) before the exec.
    nix::sys::prctl::set_dumpable(false).sys_context(|| "PR_SET_DUMPABLE".into())?;
    let process = ctx.spec.process().as_ref().expect("validated");
    // Compiled here, loaded last (finalize_process); a profile that does not
    // compile fails create now.
    let seccomp = ctx.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()).map(seccomp::compile).transpose()?;
    if ctx.new_session_keyring {
        syscall::join_session_keyring(&format!("_ses.{}", ctx.id))?;
    }

    if ctx.mount_ns {
        rootfs::prepare(&rootfs::RootfsContext {
            spec: ctx.spec,
            rootfs: ctx.rootfs,
            bundle: ctx.bundle,
            cgroup: ctx.cgroup,
            in_user_ns: ctx.new_user_ns,
            new_cgroup_ns: ctx.new_cgroup_ns,
            idmapped: ctx.idmapped,
        })?;
    }
    // Placed from here on: hooks fork, and whatever forks must be counted
    // (pids.max) and limited as the container.
    let host_pid = match early_start {
        Some(pid) => pid,
        None => {
            let pid = await_start(ctx)?;
            if ctx.new_cgroup_ns {
                // Rooted at the cgroup we are in, so only now (the
                // bootstrap makes it in the other case).
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP).sys_context(|| "unshare cgroup namespace".into())?;
            }
            pid
        }
    };
    ctx.channel.send(&ChildMessage::RunCreateRuntimeHooks)?;
    match ctx.channel.expect::<ParentMessage>("createRuntime hooks")? {
        ParentMessage::CreateRuntimeHooksDone => {}
        other => return Err(Error::Init(format!("unexpected message {other:?}"))),
    }
    // runtime-spec: createContainer hooks run in the container's namespaces,
    // before pivot_root. Their state says "created": the spec's lifecycle
    // has these hooks run after step 2, the point it calls created (runc
    // says "created" too).
    let hooks = ctx.spec.hooks().as_ref();
    hooks::run_all(
        HookKind::CreateContainer,
        hooks.and_then(|h| h.create_container().as_ref()),
        &hook_state(ctx, Status::Created, host_pid),
    )?;

    // The fifo lives in hull's state dir, outside the rootfs: hold it (and
    // a handle on our fd table in the host's /proc) across the pivot.
    let fifo = nix::fcntl::open(ctx.exec_fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).sys_context(|| "open exec fifo".into())?;
    let proc_fd_dir = nix::fcntl::open("/proc/self/fd", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| "open /proc/self/fd".into())?;

    if ctx.mount_ns {
        rootfs::enter_root(ctx.rootfs, ctx.no_pivot)?;
        rootfs::root_propagation(ctx.spec)?;
        // Before readonlyPaths make /proc/sys read-only.
        sysctl::apply(ctx.spec)?;
    } else {
        // The host's /proc/sys shows the sysctls of our own namespaces; the
        // rootfs may have no /proc at all.
        sysctl::apply(ctx.spec)?;
        rootfs::chroot_into(ctx.rootfs)?;
    }
    if let Some(h) = ctx.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).sys_context(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = ctx.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        syscall::setdomainname(d)?;
    }
    if process.terminal().unwrap_or(false) {
        let socket = ctx
            .console_socket
            .ok_or_else(|| Error::Init("terminal requested without a console socket".into()))?;
        let size = process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16));
        console::setup(socket, size, true)?;
    }
    rootfs::finish(ctx.spec)?;
    if let Some(adj) = process.oom_score_adj() {
        process::set_oom_score_adj(adj)?;
    }
    process::apply_rlimits(process)?;
    process::check_grantable(process)?;
    // Set while still root (a real-time policy needs CAP_SYS_NICE) and
    // before InitReady, so that a value the kernel refuses fails create.
    attrs::apply(process, ctx.spec.linux().as_ref())?;
    let cwd = process.cwd();
    if !cwd.exists() {
        std::fs::create_dir_all(cwd).sys_context(|| format!("create cwd {}", cwd.display()))?;
    }
    let env = process::environment(process);
    let args = process.args().as_ref().expect("validated");
    let program = process::find_executable(&args[0], &env)?;
    let listener = match ctx.seccomp_listener {
        Some(socket) => Some(seccomp::Listener {
            socket: socket.try_clone().sys_context(|| "dup seccomp listener socket".into())?,
            metadata: ctx
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.seccomp().as_ref())
                .and_then(|s| s.listener_metadata().clone()),
            state: serde_json::to_value(hook_state(ctx, Status::Created, host_pid)).map_err(|e| Error::Init(e.to_string()))?,
        }),
        None => None,
    };
    ctx.channel.send(&ChildMessage::InitReady)?;
    Ok(Prepared { program, env, fifo, proc_fd_dir, host_pid, seccomp, listener })
}

fn hook_state<'a>(ctx: &'a InitContext, status: Status, pid: i32) -> SpecState<'a> {
    SpecState {
        oci_version: OCI_VERSION,
        id: ctx.id,
        status,
        pid: Some(pid),
        bundle: ctx.bundle,
        annotations: ctx.spec.annotations().as_ref().filter(|a| !a.is_empty()),
    }
}

fn start_program(ctx: &InitContext, p: Prepared) -> Error {
    // Held open (close-on-exec) until the exec: `start` waits for its EOF.
    let _fifo = match release_and_finalize(ctx, &p) {
        Ok(fifo) => fifo,
        Err(e) => return e,
    };
    let args = ctx.spec.process().as_ref().and_then(|p| p.args().clone()).unwrap_or_default();
    process::exec(&p.program, &args, &p.env)
}

fn release_and_finalize(ctx: &InitContext, p: &Prepared) -> Result<OwnedFd> {
    // Opening the fifo for writing blocks until `hull start` opens it for
    // reading. The path is gone after the pivot: reopen through our fd.
    let name = p.fifo.as_raw_fd().to_string();
    let fifo = nix::fcntl::openat(p.proc_fd_dir.as_fd(), name.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| "open exec fifo for writing".into())?;
    let process = ctx.spec.process().as_ref().expect("validated");
    // runtime-spec: startContainer hooks run in the container after `start`
    // and before the program, with the state "created".
    let hooks = ctx.spec.hooks().as_ref();
    hooks::run_all(
        HookKind::StartContainer,
        hooks.and_then(|h| h.start_container().as_ref()),
        &hook_state(ctx, Status::Created, p.host_pid),
    )?;
    // The byte tells `start` the hooks are done; the fifo's EOF at exec then
    // tells it the program runs, so poststart hooks come after it (spec).
    // Written before the seccomp filter, which might not allow write(2).
    nix::unistd::write(&fifo, b"0").sys_context(|| "write exec fifo".into())?;
    finalize_process(process, ctx.preserve_fds, p.seccomp.as_ref(), p.listener.as_ref().map(|l| (l, p.host_pid)))?;
    Ok(fifo)
}

/// The last steps before exec, shared by init and exec'd processes. The
/// order follows runc's:
/// - LSM exec labels while still root and before no_new_privs (see
///   [`lsm::apply_exec_labels`]);
/// - without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN, so
///   the filter goes in before the user and capabilities change, and must
///   allow what follows (setresuid, capset, chdir...), as with runc;
/// - with no_new_privs, the filter goes in last, so that as few syscalls as
///   possible run under it: after it only the handshake message of `exec`
///   and execve itself. Nothing forks after the filter is loaded.
///
/// With SCMP_ACT_NOTIFY rules the filter's notification fd goes to the
/// seccomp agent (`listener`, with the pid to report) right after loading.
pub fn finalize_process(
    process: &oci_spec::runtime::Process,
    preserve_fds: i32,
    seccomp: Option<&Filter>,
    listener: Option<(&seccomp::Listener, i32)>,
) -> Result<()> {
    let load = |filter: &Filter| -> Result<()> {
        match (filter.load()?, listener) {
            (None, _) => Ok(()),
            (Some(fd), Some((l, pid))) => l.send(fd, pid),
            (Some(_), None) => Err(Error::Init("seccomp notification fd but no listenerPath connection".into())),
        }
    };
    // The program starts with default signal handling and nothing blocked,
    // whatever hull's runtime (which ignores SIGPIPE) or caller had.
    syscall::all_signals_default()?;
    lsm::apply_exec_labels(process)?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if let (Some(filter), false) = (seccomp, no_new_privs) {
        load(filter)?;
    }
    process::switch_user(process, false)?;
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(umask as libc::mode_t));
    nix::unistd::chdir(process.cwd()).sys_context(|| format!("chdir to cwd {}", process.cwd().display()))?;
    // CVE-2024-21626: a cwd reached through a leaked host fd would be
    // outside our root; getcwd then fails or reports "(unreachable)".
    match nix::unistd::getcwd() {
        Ok(p) if p.starts_with("/") => {}
        _ => return Err(Error::Init(format!("cwd {} is outside the container root", process.cwd().display()))),
    }
    if no_new_privs {
        nix::sys::prctl::set_no_new_privs().sys_context(|| "PR_SET_NO_NEW_PRIVS".into())?;
    }
    syscall::cloexec_from(3 + preserve_fds)?;
    if let (Some(filter), true) = (seccomp, no_new_privs) {
        load(filter)?;
    }
    Ok(())
}
