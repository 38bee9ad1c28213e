//! The attributes of the process that runs the user's program: rlimits,
//! oom score, user and groups, capabilities, no_new_privs, umask, cwd, env,
//! and finally the exec itself.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimitType, Process};

use crate::error::{Error, Result, SysContext};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::c_int> {
    let name = serde_json::to_value(t).ok()?.as_str()?.to_string();
    Some(match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    } as libc::c_int)
}

/// Set process.rlimits. Raising a hard limit needs CAP_SYS_RESOURCE; where
/// the host withholds it, the limit is clamped to the current hard limit
/// with a warning instead of failing the container.
pub fn apply_rlimits(process: &Process) -> Result<()> {
    for rl in process.rlimits().iter().flatten() {
        let res = rlimit_resource(rl.typ())
            .ok_or_else(|| Error::unsupported(format!("process.rlimits {:?}", rl.typ()), "unknown on this kernel"))?;
        match crate::linux::syscall::setrlimit(res, rl.soft(), rl.hard()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                // SAFETY: getrlimit writes into our stack struct.
                unsafe { libc::getrlimit(res as _, &mut cur) };
                let hard = rl.hard().min(cur.rlim_max);
                let soft = rl.soft().min(hard);
                log::warn!(
                    "rlimit {:?}: cannot raise hard limit to {} (no CAP_SYS_RESOURCE); clamped to soft {soft} hard {hard}",
                    rl.typ(),
                    rl.hard()
                );
                crate::linux::syscall::setrlimit(res, soft, hard).sys_context(|| format!("setrlimit {:?}", rl.typ()))?;
            }
            Err(e) => return Err(Error::sys(format!("setrlimit {:?}", rl.typ()), e)),
        }
    }
    Ok(())
}

/// Write oom_score_adj. Lowering it below the current value needs
/// CAP_SYS_RESOURCE; without it the value is clamped to the current one
/// (containerd's restrict_oom_score_adj) and a warning is logged.
pub fn set_oom_score_adj(adj: i32) -> Result<()> {
    let path = "/proc/self/oom_score_adj";
    match std::fs::write(path, adj.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM) => {
            let current: i32 = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            log::warn!("oomScoreAdj {adj}: not permitted here (no CAP_SYS_RESOURCE); kept at {current}");
            if adj > current {
                std::fs::write(path, adj.to_string()).sys_context(|| format!("write {path}"))?;
            }
            Ok(())
        }
        Err(e) => Err(Error::sys(format!("write {path} {adj}"), e)),
    }
}

fn to_caps(set: Option<&oci_spec::runtime::Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        match name.parse::<caps::Capability>() {
            Ok(cap) => {
                out.insert(cap);
            }
            // A capability this kernel/crate does not know: runc warns and skips.
            Err(_) => log::warn!("capability {name} is unknown here; skipped"),
        }
    }
    Ok(out)
}

/// Refuse, before `create` returns, capability sets the runtime cannot
/// grant: effective and permitted beyond what it holds, inheritable beyond
/// its permitted and bounding sets. The error names the capabilities.
pub fn check_grantable(process: &Process) -> Result<()> {
    let Some(c) = process.capabilities().as_ref() else { return Ok(()) };
    let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let bounding = caps::read(None, CapSet::Bounding).unwrap_or_default();
    let inheritable_ok: CapsHashSet = held.union(&bounding).copied().collect();
    let sets = [
        ("effective", c.effective().as_ref(), &held),
        ("permitted", c.permitted().as_ref(), &held),
        ("inheritable", c.inheritable().as_ref(), &inheritable_ok),
    ];
    for (name, wanted, allowed) in sets {
        let mut missing: Vec<String> = to_caps(wanted)?.difference(allowed).map(|c| c.to_string()).collect();
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::Config(format!(
                "process.capabilities.{name}: cannot grant {}: the runtime does not hold it",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// Switch to the configured user and capability sets, in the order the
/// kernel needs: bounding set while still privileged, keep permitted caps
/// across setuid, then set effective/permitted/inheritable and ambient.
pub fn switch_user(process: &Process, in_user_ns_without_setgroups: bool) -> Result<()> {
    let user = process.user();
    let caps = process.capabilities().as_ref();
    if let Some(c) = caps {
        let bounding = to_caps(c.bounding().as_ref())?;
        for cap in caps::all() {
            // Skip capabilities the running kernel does not have.
            if bounding.contains(&cap) || !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                continue;
            }
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| Error::Init(format!("drop {cap} from the bounding set: {e}")))?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).sys_context(|| "PR_SET_KEEPCAPS".into())?;
    if !in_user_ns_without_setgroups {
        let gids: Vec<nix::unistd::Gid> = user.additional_gids().iter().flatten().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).sys_context(|| "setgroups".into())?;
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).sys_context(|| format!("setresgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).sys_context(|| format!("setresuid {uid}"))?;
    nix::sys::prctl::set_keepcaps(false).sys_context(|| "PR_SET_KEEPCAPS".into())?;
    apply_caps(caps)
}

fn apply_caps(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let Some(c) = caps else {
        // No capabilities object: the process gets none (runtime-spec).
        for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable, CapSet::Ambient] {
            caps::clear(None, set).map_err(|e| Error::Init(format!("clear {set:?}: {e}")))?;
        }
        return Ok(());
    };
    let permitted = to_caps(c.permitted().as_ref())?;
    let effective = to_caps(c.effective().as_ref())?;
    let inheritable = to_caps(c.inheritable().as_ref())?;
    let ambient = to_caps(c.ambient().as_ref())?;
    caps::clear(None, CapSet::Ambient).map_err(|e| Error::Init(format!("clear ambient: {e}")))?;
    // What the runtime itself holds: a set asking for more cannot be granted.
    let held = caps::read(None, CapSet::Permitted).unwrap_or_default();
    let cannot = |set: &str, wanted: &CapsHashSet, e: caps::errors::CapsError| {
        let mut missing: Vec<String> = wanted.difference(&held).map(|c| c.to_string()).collect();
        missing.sort();
        if missing.is_empty() {
            Error::Init(format!("process.capabilities.{set}: {e}"))
        } else {
            Error::Init(format!("process.capabilities.{set}: cannot grant {}: the runtime does not hold it ({e})", missing.join(", ")))
        }
    };
    // Each capset must leave effective within permitted, and raising
    // inheritable needs CAP_SETPCAP still effective: so inheritable first,
    // then effective, and permitted (the narrowing) last.
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| cannot("inheritable", &inheritable, e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| cannot("effective", &effective, e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| cannot("permitted", &permitted, e))?;
    for cap in ambient {
        // Raising an ambient cap needs it permitted and inheritable: runc
        // skips the ones that are not, with a warning.
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            log::debug!("ambient capability {cap} not raised (not in permitted and inheritable): {e}");
        }
    }
    Ok(())
}

/// The environment for the program, with HOME added from /etc/passwd
/// when the config does not set it (as runc does).
pub fn environment(process: &Process) -> Vec<String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    env
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
    })
}

/// Find the program the way execvp would, but with the container's PATH.
pub fn find_executable(program: &str, env: &[String]) -> Result<PathBuf> {
    let not_found = || Error::Init(format!("exec: {program:?}: executable file not found in $PATH"));
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return check_executable(&p).map(|_| p).map_err(|e| Error::Init(format!("exec: {program:?}: {e}")));
    }
    let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

fn check_executable(p: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("permission denied".into());
    }
    Ok(())
}

/// Replace this process with the program. Returns only on failure.
pub fn exec(program: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s).unwrap_or_default();
    let path = CString::new(program.as_os_str().as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| to_c(e)).collect();
    if let Some(trampoline) = super::dmz::armed() {
        // This process is a `create`'s init that did not re-exec hull
        // protected: its program is exec'd through the trampoline (see
        // linux::dmz).
        let err = super::dmz::exec(trampoline, &path, &argv, &envp);
        return Error::sys(format!("exec {} through the init trampoline", program.display()), err);
    }
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Error::sys(format!("exec {}", program.display()), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_program_in_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(find_executable("sh", &env).unwrap(), PathBuf::from("/bin/sh"));
        let err = find_executable("no-such-program-x", &env).unwrap_err().to_string();
        assert!(err.contains("executable file not found in $PATH"), "{err}");
    }

    #[test]
    fn rlimit_names_map() {
        assert_eq!(rlimit_resource(PosixRlimitType::RlimitNofile), Some(libc::RLIMIT_NOFILE as i32));
    }
}
