//! The sandbox holder ("hull-pause"): a sleeping process that owns a pod's
//! network, IPC and UTS namespaces (and its PID namespace when the pod
//! shares one, where it is pid 1 and reaps orphans). It is started by
//! exec'ing `hull sandbox-holder` ([`spawn`]), never by forking the caller,
//! and it sets the pod's hostname, loopback and sysctls from inside the new
//! namespaces before it reports.
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
#[cfg(not(target_arch = "x86_64"))]
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::error::{Result, RuntimeError};
use super::record::HolderRecord;
use crate::error::{Error, SysContext};
use crate::linux::syscall::{fork, Forked};

/// Which namespaces the holder makes, and what it sets in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolderSpec {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
    pub hostname: Option<String>,
    pub sysctls: Vec<(String, String)>,
    /// Load hull's default seccomp profile into the holder.
    pub seccomp_default: bool,
    /// Or load this OCI seccomp profile (a copy the runtime layer wrote
    /// from the sandbox's Localhost profile, already checked to compile).
    pub seccomp_file: Option<std::path::PathBuf>,
    /// Who the holder runs as once the namespaces are made.
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub groups: Vec<i64>,
    /// The cgroup directories (one per v1 hierarchy, or the v2 one) the
    /// holder joins before it makes anything, so that it and its
    /// namespaces' set-up are the pod's from the start.
    pub cgroups: Vec<std::path::PathBuf>,
}

impl HolderSpec {
    /// The `hull sandbox-holder` arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["sandbox-holder".to_string(), "--ready-fd".into(), "1".into()];
        for (on, flag) in [(self.network, "--net"), (self.ipc, "--ipc"), (self.uts, "--uts"), (self.pid, "--pid")] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(h) = &self.hostname {
            a.push("--hostname".into());
            a.push(h.clone());
        }
        for (k, v) in &self.sysctls {
            a.push("--sysctl".into());
            a.push(format!("{k}={v}"));
        }
        if self.seccomp_default {
            a.push("--seccomp-default".into());
        }
        if let Some(f) = &self.seccomp_file {
            a.push("--seccomp-file".into());
            a.push(f.to_string_lossy().into_owned());
        }
        for (flag, v) in [("--uid", self.uid), ("--gid", self.gid)] {
            if let Some(v) = v {
                a.push(flag.into());
                a.push(v.to_string());
            }
        }
        for g in &self.groups {
            a.push("--group".into());
            a.push(g.to_string());
        }
        for c in &self.cgroups {
            a.push("--cgroup".into());
            a.push(c.to_string_lossy().into_owned());
        }
        a
    }

    /// The spec back from [`HolderSpec::args`] (without the leading
    /// `sandbox-holder`), and the report fd. Only what `args` writes is
    /// accepted; anything else is an error naming it.
    pub fn parse_args(args: &[String]) -> std::result::Result<(HolderSpec, i32), String> {
        let mut spec = HolderSpec::default();
        let mut ready_fd = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag}: a value is needed"));
            let number = |v: &String| v.parse::<i64>().map_err(|_| format!("{flag} {v:?}: not a number"));
            match flag.as_str() {
                "--ready-fd" => {
                    let v = value()?;
                    ready_fd = Some(v.parse::<i32>().map_err(|_| format!("--ready-fd {v:?}: not an fd number"))?);
                }
                "--net" => spec.network = true,
                "--ipc" => spec.ipc = true,
                "--uts" => spec.uts = true,
                "--pid" => spec.pid = true,
                "--seccomp-default" => spec.seccomp_default = true,
                "--hostname" => spec.hostname = Some(value()?.clone()),
                "--seccomp-file" => spec.seccomp_file = Some(value()?.into()),
                "--sysctl" => {
                    let kv = value()?;
                    let (k, v) = kv.split_once('=').ok_or_else(|| format!("--sysctl {kv:?}: expected KEY=VALUE"))?;
                    spec.sysctls.push((k.to_string(), v.to_string()));
                }
                "--uid" => spec.uid = Some(number(value()?)?),
                "--gid" => spec.gid = Some(number(value()?)?),
                "--group" => spec.groups.push(number(value()?)?),
                "--cgroup" => spec.cgroups.push(value()?.into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok((spec, ready_fd.ok_or("--ready-fd is required")?))
    }

    /// Whether a sysctl may be set: only in a namespace this holder makes
    /// (the rule of `linux::sysctl`).
    pub fn check_sysctl(&self, key: &str) -> std::result::Result<(), String> {
        use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, SpecBuilder};
        let mut nss = Vec::new();
        for (on, t) in
            [(self.network, LinuxNamespaceType::Network), (self.ipc, LinuxNamespaceType::Ipc), (self.uts, LinuxNamespaceType::Uts)]
        {
            if on {
                nss.push(LinuxNamespaceBuilder::default().typ(t).build().map_err(|e| e.to_string())?);
            }
        }
        let linux = LinuxBuilder::default().namespaces(nss).build().map_err(|e| e.to_string())?;
        let spec = SpecBuilder::default().linux(linux).build().map_err(|e| e.to_string())?;
        crate::linux::sysctl::check_namespaced(key, &spec)
    }
}

/// Start a holder; returns once its namespaces exist and are set up.
pub fn spawn(hull: &Path, spec: &HolderSpec) -> Result<HolderRecord> {
    let mut cmd = Command::new(hull);
    cmd.args(spec.args());
    let answer = super::child::run_reporting(cmd, "sandbox holder")?;
    let pid: i32 = answer.parse().map_err(|_| RuntimeError::internal(format!("sandbox holder said {answer:?}")))?;
    let start_time = crate::oci::state::process_start_time(pid).ok_or_else(|| RuntimeError::internal("sandbox holder died at start"))?;
    Ok(HolderRecord { pid, start_time })
}

/// Stop a holder (its namespaces go when their last member leaves).
pub fn stop(h: &HolderRecord) {
    if h.alive() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid), Signal::SIGKILL);
        crate::oci::wait::wait_gone(h.pid, std::time::Duration::from_secs(5));
    }
}

/// `/proc/<holder>/ns/<typ>` ("net", "ipc", "uts", "pid").
pub fn ns_path(h: &HolderRecord, typ: &str) -> String {
    format!("/proc/{}/ns/{typ}", h.pid)
}

/// `hull sandbox-holder` itself (a fresh, single-threaded process): make
/// the namespaces, fork the holder, report its pid on `ready`, exit.
pub fn main(spec: &HolderSpec, ready: OwnedFd) -> i32 {
    let mut ready = std::fs::File::from(ready);
    // The filter is compiled while this process still has its privileges
    // (the profile file may be root's only) and loaded by the holder last.
    let filter = match seccomp_filter(spec).and_then(|f| set_up(spec).map(|()| f)) {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(ready, "err {e}");
            return 1;
        }
    };
    // The holder says on `confined` whether it could take its user and
    // filter (nothing: it could); only then is it reported ready.
    let (mut confined_r, confined_w) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => {
            let _ = write!(ready, "err pipe: {e}");
            return 1;
        }
    };
    match fork() {
        Ok(Forked::Parent(pid)) => {
            drop(confined_w);
            let mut why = String::new();
            let _ = std::io::Read::read_to_string(&mut confined_r, &mut why);
            if why.is_empty() {
                let _ = writeln!(ready, "ok {pid}");
                0
            } else {
                let _ = write!(ready, "err {why}");
                1
            }
        }
        Ok(Forked::Child) => {
            drop(confined_r);
            let mut confined_w = confined_w;
            if let Err(e) = confine(spec, filter.as_ref()) {
                let _ = write!(confined_w, "{e}");
                crate::linux::syscall::exit_now(1);
            }
            drop(confined_w);
            holder_loop(ready.as_raw_fd())
        }
        Err(e) => {
            let _ = write!(ready, "err {e}");
            1
        }
    }
}

fn set_up(spec: &HolderSpec) -> crate::Result<()> {
    // Into the pod's cgroup first: the holder forked below inherits it,
    // and what this process allocates is charged there.
    let me = std::process::id().to_string();
    for dir in &spec.cgroups {
        std::fs::write(dir.join("cgroup.procs"), &me).sys_context(|| format!("join cgroup {}", dir.display()))?;
    }
    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (spec.network, CloneFlags::CLONE_NEWNET),
        (spec.ipc, CloneFlags::CLONE_NEWIPC),
        (spec.uts, CloneFlags::CLONE_NEWUTS),
        (spec.pid, CloneFlags::CLONE_NEWPID),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).sys_context(|| format!("unshare {flags:?}"))?;
    if let Some(h) = spec.hostname.as_deref().filter(|_| spec.uts) {
        nix::unistd::sethostname(h).sys_context(|| format!("sethostname {h:?}"))?;
    }
    if spec.network {
        crate::linux::syscall::set_loopback_up()?;
    }
    // /proc/sys/net and the IPC keys are those of the writer's namespaces,
    // which are now the pod's.
    for (key, value) in &spec.sysctls {
        spec.check_sysctl(key).map_err(|why| Error::InvalidArgument(format!("sysctl {key}: {why}")))?;
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).sys_context(|| format!("sysctl {key}={value}"))?;
    }
    Ok(())
}

/// The holder's seccomp filter: a profile file's, hull's default, or none.
fn seccomp_filter(spec: &HolderSpec) -> crate::Result<Option<crate::seccomp::Filter>> {
    let profile = if let Some(f) = &spec.seccomp_file {
        super::spec::read_seccomp_profile(f).map_err(Error::InvalidArgument)?
    } else if spec.seccomp_default {
        crate::seccomp::runtime_default(&Default::default())
    } else {
        return Ok(None);
    };
    Ok(Some(crate::seccomp::compile(&profile)?))
}

/// In the holder: its user and seccomp filter. The namespaces it owns are
/// made; it needs no privilege from here on.
fn confine(spec: &HolderSpec, filter: Option<&crate::seccomp::Filter>) -> crate::Result<()> {
    let id = |v: i64| u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("id {v} out of range")));
    if spec.uid.is_some() || spec.gid.is_some() || !spec.groups.is_empty() {
        let groups: Vec<nix::unistd::Gid> =
            spec.groups.iter().map(|g| id(*g).map(nix::unistd::Gid::from_raw)).collect::<crate::Result<_>>()?;
        nix::unistd::setgroups(&groups).sys_context(|| "setgroups".into())?;
        let gid = nix::unistd::Gid::from_raw(id(spec.gid.unwrap_or(0))?);
        nix::unistd::setresgid(gid, gid, gid).sys_context(|| format!("setresgid {gid}"))?;
        let uid = nix::unistd::Uid::from_raw(id(spec.uid.unwrap_or(0))?);
        nix::unistd::setresuid(uid, uid, uid).sys_context(|| format!("setresuid {uid}"))?;
    }
    if let Some(f) = filter {
        // hull's filters leave no_new_privs to the caller; without it (or
        // CAP_SYS_ADMIN, gone with a non-root uid) the kernel refuses the
        // filter. The holder never execs, so it gives up nothing.
        nix::sys::prctl::set_no_new_privs().sys_context(|| "PR_SET_NO_NEW_PRIVS".into())?;
        f.load()?;
    }
    Ok(())
}

/// The holder: sleeps, reaps orphans, exits on SIGTERM/SIGINT. On x86_64
/// it does so on raw system calls with hull's relocated data unmapped
/// (`linux::idle`): most of what it kept resident.
fn holder_loop(keep: i32) -> ! {
    let _ = nix::sys::prctl::set_name(c"hull-pause");
    let _ = nix::unistd::close(keep);
    // Nothing of the caller stays open in the holder.
    let _ = crate::linux::syscall::cloexec_from(3);
    for fd in 3..1024 {
        let _ = nix::unistd::close(fd);
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = set.thread_block();
    crate::linux::syscall::shrink_resident();
    #[cfg(target_arch = "x86_64")]
    {
        let mask = crate::linux::idle::signal_mask(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
        // SAFETY: the holder is single-threaded (forked from the single
        // thread of `hull sandbox-holder`) and this never returns.
        unsafe { crate::linux::idle::release_relocated_data_and_idle(mask) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            },
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => crate::linux::syscall::exit_now(0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_args_round_trips_and_refuses_the_unknown() {
        let spec = HolderSpec {
            pid: true,
            seccomp_default: true,
            seccomp_file: Some("/run/hull/sandboxes/x/holder-seccomp.json".into()),
            uid: Some(-1),
            gid: Some(1000),
            groups: vec![5, 6],
            cgroups: vec!["/sys/fs/cgroup/memory/hull/pod-x/sandbox".into()],
            sysctls: vec![("kernel.shmmax".into(), "a=b".into())],
            ..Default::default()
        };
        assert_eq!(HolderSpec::parse_args(&spec.args()[1..]).unwrap(), (spec, 1));
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(HolderSpec::parse_args(&s(&["--net"])).unwrap_err().contains("--ready-fd"));
        assert!(HolderSpec::parse_args(&s(&["--ready-fd", "3", "--bogus"])).unwrap_err().contains("--bogus"));
        assert!(HolderSpec::parse_args(&s(&["--ready-fd", "3", "--uid"])).unwrap_err().contains("--uid"));
        assert!(HolderSpec::parse_args(&s(&["--ready-fd", "x"])).is_err());
        assert!(HolderSpec::parse_args(&s(&["--ready-fd", "3", "--sysctl", "novalue"])).is_err());
    }

    #[test]
    fn args_and_sysctl_rules() {
        let spec = HolderSpec {
            network: true,
            ipc: true,
            uts: true,
            hostname: Some("h".into()),
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
            ..Default::default()
        };
        assert_eq!(
            spec.args(),
            ["sandbox-holder", "--ready-fd", "1", "--net", "--ipc", "--uts", "--hostname", "h", "--sysctl", "net.ipv4.ip_forward=1"]
        );
        assert!(spec.check_sysctl("net.ipv4.ip_forward").is_ok());
        assert!(spec.check_sysctl("kernel.shmmax").is_ok());
        assert!(spec.check_sysctl("kernel.panic").is_err());
        let (back, fd) = HolderSpec::parse_args(&spec.args()[1..]).unwrap();
        assert_eq!((back, fd), (spec.clone(), 1));
        let host_net = HolderSpec { network: false, ..spec };
        assert!(host_net.check_sysctl("net.ipv4.ip_forward").unwrap_err().contains("network"));
    }
}
