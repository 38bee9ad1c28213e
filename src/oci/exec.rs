//! `exec`: run another process in a running container's namespaces and cgroup.
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::Process;

use super::state::{StateRoot, Status};
use crate::error::{Error, Result, SysContext};
use crate::linux::channel::{Channel, ChildMessage, ParentMessage};
use crate::linux::namespaces::NamespacePlan;
use crate::linux::syscall::{fork, Forked};
use crate::linux::{console, init, process};
use crate::seccomp::Filter;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub id: String,
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
}

/// Start the process; returns its host pid.
pub fn spawn(root: &StateRoot, opts: &ExecOptions, console: Option<OwnedFd>) -> Result<i32> {
    let rec = root.load(&opts.id)?;
    match rec.status(root) {
        Status::Running | Status::Created => {}
        s => return Err(Error::InvalidState(format!("cannot exec in a {s} container"))),
    }
    let terminal = opts.process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && console.is_none() {
        return Err(Error::InvalidArgument("--tty with --detach needs --console-socket".into()));
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument("exec needs a command (args or --process)".into()));
    }
    // The container's seccomp profile applies to every process in it; the
    // labels are the exec'd process's own. Both are checked before forking.
    crate::linux::lsm::check_spec(&rec.config, &opts.process)?;
    let seccomp = rec
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(crate::seccomp::compile)
        .transpose()?;
    let plan = NamespacePlan::of_process(rec.pid)?;
    crate::linux::attrs::check(&opts.process, rec.config.linux().as_ref())?;
    let (cpu_initial, cpu_final) = crate::linux::attrs::exec_cpu_affinity(&opts.process)?;
    let console = match console {
        Some(c) => Some(c),
        None => opts.console_socket.as_deref().map(console::connect).transpose()?,
    };
    let listener = match rec.config.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) if profile.listener_path().is_some() => Some(crate::seccomp::Listener {
            socket: crate::seccomp::connect_listener(profile.listener_path().as_deref().expect("checked"))?,
            metadata: profile.listener_metadata().clone(),
            state: serde_json::to_value(rec.spec_state(Status::Running)).map_err(|e| Error::Init(e.to_string()))?,
        }),
        _ => None,
    };
    let child = ExecChild {
        process: &opts.process,
        linux: rec.config.linux().as_ref(),
        // A container without a mount namespace of its own lives chrooted
        // in the host's: the process goes to the init's root the same way.
        chroot_to: (!plan.joins.iter().any(|j| j.typ == oci_spec::runtime::LinuxNamespaceType::Mount))
            .then(|| PathBuf::from(format!("/proc/{}/root", rec.pid))),
        cpu_final: cpu_final.as_deref(),
        seccomp: seccomp.as_ref(),
        console: console.as_ref(),
        preserve_fds: opts.preserve_fds,
        listener,
    };
    let (ours, theirs) = Channel::pair()?;
    let stage1 = match fork()? {
        Forked::Child => {
            drop(ours);
            bootstrap(&theirs, &plan, &child)
        }
        Forked::Parent(pid) => pid,
    };
    drop(theirs);
    drop(console);
    let result = (|| -> Result<i32> {
        // execCPUAffinity.initial: where the process runs until it joins
        // the container's cgroup (set before it is moved there).
        if let Some(cpus) = &cpu_initial {
            crate::linux::attrs::set_affinity(stage1.as_raw(), cpus, "process.execCPUAffinity.initial")?;
        }
        if let Some(cg) = &rec.cgroup {
            cg.add_pid(stage1.as_raw())?;
        }
        ours.send(&ParentMessage::Proceed)?;
        let mut pid = 0;
        loop {
            let msg = match ours.recv::<ChildMessage>()? {
                Some(m) => m,
                // After the seccomp filter is loaded the process may be
                // unable to report ExecReady (a profile that blocks
                // sendto); its channel end then just closes at execve.
                // Whatever happened, waiting on it tells the outcome.
                None if pid != 0 => {
                    log::debug!("exec: process {pid} closed the handshake without reporting");
                    return Ok(pid);
                }
                None => return Err(Error::Init("peer exited while hull waited for exec setup".into())),
            };
            match msg {
                ChildMessage::InitForked { pid: p } => {
                    pid = p;
                    let _ = nix::sys::wait::waitpid(stage1, None);
                    ours.send(&ParentMessage::Start { host_pid: p })?;
                }
                ChildMessage::ExecReady => return Ok(pid),
                ChildMessage::Failed(r) => return Err(Error::from_remote(r).with_context("exec failed")),
                other => return Err(Error::Init(format!("unexpected message {other:?}"))),
            }
        }
    })();
    match result {
        Ok(pid) => {
            if let Some(p) = &opts.pid_file {
                super::create::write_pid_file(p, pid)?;
            }
            Ok(pid)
        }
        Err(e) => {
            let _ = nix::sys::signal::kill(stage1, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(stage1, None);
            Err(e)
        }
    }
}

/// The exec'd process and what it takes from its container besides
/// namespaces.
struct ExecChild<'a> {
    process: &'a Process,
    linux: Option<&'a oci_spec::runtime::Linux>,
    chroot_to: Option<PathBuf>,
    cpu_final: Option<&'a [usize]>,
    seccomp: Option<&'a Filter>,
    console: Option<&'a OwnedFd>,
    preserve_fds: i32,
    listener: Option<crate::seccomp::Listener>,
}

fn bootstrap(ch: &Channel, plan: &NamespacePlan, child: &ExecChild) -> ! {
    let result = (|| -> Result<()> {
        match ch.expect::<ParentMessage>("cgroup placement")? {
            ParentMessage::Proceed => {}
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
        plan.join_all(true)?;
        plan.join_all(false)?;
        match fork()? {
            Forked::Child => exec_child(ch, child),
            Forked::Parent(pid) => ch.send(&ChildMessage::InitForked { pid: pid.as_raw() }),
        }
    })();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let _ = ch.send(&ChildMessage::Failed(e.to_remote()));
            std::process::exit(1)
        }
    }
}

/// The exec'd process, now in the container's pid namespace.
fn exec_child(ch: &Channel, child: &ExecChild) -> ! {
    let process = child.process;
    let result = (|| -> Result<(PathBuf, Vec<String>)> {
        let host_pid = match ch.expect::<ParentMessage>("start")? {
            ParentMessage::Start { host_pid } => host_pid,
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        };
        // Until the exec, container processes must not reach into us.
        nix::sys::prctl::set_dumpable(false).sys_context(|| "PR_SET_DUMPABLE".into())?;
        if let Some(socket) = child.console {
            nix::unistd::setsid().sys_context(|| "setsid".into())?;
            let size = process.console_size().as_ref().map(|b| (b.height() as u16, b.width() as u16));
            console::setup(socket, size, false)?;
        }
        if let Some(root) = &child.chroot_to {
            crate::linux::rootfs::chroot_into(root)?;
        }
        process::apply_rlimits(process)?;
        process::check_grantable(process)?;
        let env = process::environment(process);
        let args = process.args().as_ref().expect("checked");
        let program = process::find_executable(&args[0], &env)?;
        // While still root, and reported before ExecReady (see init).
        crate::linux::attrs::apply(process, child.linux)?;
        // execCPUAffinity.final: now that the process is in the cgroup.
        if let Some(cpus) = child.cpu_final {
            crate::linux::attrs::set_affinity(0, cpus, "process.execCPUAffinity.final")?;
        }
        init::finalize_process(process, child.preserve_fds, child.seccomp, child.listener.as_ref().map(|l| (l, host_pid)))?;
        Ok((program, env))
    })();
    match result {
        Ok((program, env)) => {
            let _ = ch.send(&ChildMessage::ExecReady);
            let args = process.args().clone().unwrap_or_default();
            let err = process::exec(&program, &args, &env);
            crate::logging::eprint_line(crate::logging::LogFormat::Text, log::Level::Error, &format!("exec: {err}"));
            std::process::exit(127)
        }
        Err(e) => {
            let _ = ch.send(&ChildMessage::Failed(e.to_remote()));
            std::process::exit(1)
        }
    }
}

/// Run and, unless detached, wait for the process; returns its exit code.
pub fn exec(root: &StateRoot, opts: &ExecOptions) -> Result<i32> {
    if !opts.detach {
        nix::sys::prctl::set_child_subreaper(true).sys_context(|| "PR_SET_CHILD_SUBREAPER".into())?;
    }
    let proxy_console = !opts.detach && opts.console_socket.is_none() && opts.process.terminal().unwrap_or(false);
    let (receiver, console) = match proxy_console {
        true => {
            let (r, c) = super::tty_proxy::console_pair()?;
            (Some(r), Some(c))
        }
        false => (None, None),
    };
    // The container's pty gets the user's window size when it is made,
    // not when the proxy starts: the process may ask for it (`stty size`)
    // before the proxy has the master.
    let sized;
    let opts = match proxy_console.then(|| super::tty_proxy::window_size(0)).flatten() {
        Some((rows, cols)) if rows > 0 && opts.process.console_size().is_none() => {
            let mut process = opts.process.clone();
            let size = oci_spec::runtime::BoxBuilder::default().height(u64::from(rows)).width(u64::from(cols)).build();
            process.set_console_size(size.ok());
            sized = ExecOptions { process, ..opts.clone() };
            &sized
        }
        _ => opts,
    };
    let pid = spawn(root, opts, console)?;
    if opts.detach {
        return Ok(0);
    }
    let set = super::wait::block_signals();
    let proxy = receiver.map(|r| r.receive_master().and_then(super::tty_proxy::Proxy::start)).transpose()?;
    let code = super::tty_proxy::Proxy::wait(proxy.as_ref(), pid, &set);
    if let Some(p) = proxy {
        p.finish(std::time::Duration::from_secs(1));
    }
    Ok(code)
}
