//! From the runtime-spec's `LinuxSeccomp` to a libseccomp filter, following
//! runc's reading of the spec where the spec is silent.
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall};

use super::{spec_name, SeccompError, ARCHES};
use crate::linux::syscall as sys;

/// The kernel passes six syscall arguments.
const MAX_ARGS: usize = 6;

/// A compiled filter, ready to be loaded into the calling process.
pub struct Filter {
    ctx: ScmpFilterContext,
    /// Some rule says SCMP_ACT_NOTIFY: loading yields a notification fd
    /// for the seccomp agent at linux.seccomp.listenerPath.
    notify: bool,
    /// A flag this libseccomp cannot set (WAIT_KILLABLE_RECV needs 2.6):
    /// the exported program and the kernel flags, loaded with seccomp(2).
    direct: Option<(Vec<u8>, u32)>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Filter")
    }
}

impl Filter {
    /// Install the filter on this process (and, with TSYNC, its threads).
    /// Without no_new_privs this needs CAP_SYS_ADMIN in the current user
    /// namespace. After it, every syscall of this process is filtered, so
    /// the caller does as little as possible between this and execve.
    ///
    /// Returns the user-notification fd when the filter has SCMP_ACT_NOTIFY
    /// rules (close-on-exec, as the kernel makes it).
    pub fn load(&self) -> Result<Option<std::os::fd::RawFd>, SeccompError> {
        if let Some((prog, flags)) = &self.direct {
            return crate::linux::syscall::seccomp_set_mode_filter(prog, *flags)
                .map_err(|e| SeccompError::Kernel { what: "load the filter".into(), source: e });
        }
        self.ctx.load().map_err(SeccompError::lib("load the filter"))?;
        if !self.notify {
            return Ok(None);
        }
        self.ctx.get_notify_fd().map(Some).map_err(SeccompError::lib("get the notification fd"))
    }

    /// The filter as the BPF program the kernel would get.
    #[cfg(test)]
    fn bpf(&self) -> Result<Vec<u8>, SeccompError> {
        use std::io::{Read, Seek};
        let mut f = tempfile::tempfile().expect("temp file");
        self.ctx.export_bpf(&f).map_err(SeccompError::lib("export BPF"))?;
        let mut out = Vec::new();
        f.rewind().and_then(|_| f.read_to_end(&mut out)).expect("read back BPF");
        Ok(out)
    }
}

/// Compile a profile. Errors name the offending field by its JSON path
/// (`linux.seccomp.syscalls[3].args[0].index`); syscall names libseccomp
/// does not know are skipped with a debug log, as runc does, so one profile
/// serves kernels of different ages.
pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    const ROOT: &str = "linux.seccomp";
    let notify = profile.default_action() == LinuxSeccompAction::ScmpActNotify
        || profile.syscalls().iter().flatten().any(|r| r.action() == LinuxSeccompAction::ScmpActNotify);
    if notify && profile.listener_path().is_none() {
        return Err(SeccompError::invalid(
            format!("{ROOT}.listenerPath"),
            "must name the seccomp agent's socket when a rule's action is SCMP_ACT_NOTIFY",
        ));
    }
    if let Some(p) = profile.listener_path().as_ref().filter(|p| !p.is_absolute()) {
        return Err(SeccompError::invalid(format!("{ROOT}.listenerPath"), format!("{} is not an absolute path", p.display())));
    }
    let default = action(&format!("{ROOT}.defaultErrnoRet"), profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(SeccompError::lib("create a filter"))?;
    // hull sets no_new_privs itself, from process.noNewPrivileges; libseccomp
    // would otherwise set it on every load.
    ctx.set_ctl_nnp(false).map_err(SeccompError::lib("clear the no_new_privs attribute"))?;

    for (i, arch) in profile.architectures().iter().flatten().enumerate() {
        let field = format!("{ROOT}.architectures[{i}]");
        let token = ARCHES
            .iter()
            .find(|(a, _)| a == arch)
            .map(|(_, t)| *t)
            .ok_or_else(|| SeccompError::invalid(&field, format!("unknown architecture {}", spec_name(arch))))?;
        // The native architecture is in every new filter already.
        if ctx.is_arch_present(token).unwrap_or(false) {
            continue;
        }
        ctx.add_arch(token)
            .map_err(|e| SeccompError::invalid(&field, format!("{} is not supported by this libseccomp: {e}", spec_name(arch))))?;
    }

    // The kernel's flag bits as well, for a filter that hull loads itself.
    let mut kernel_flags = 0u32;
    let mut wait_killable = None;
    for (i, flag) in profile.flags().iter().flatten().enumerate() {
        let field = format!("{ROOT}.flags[{i}]");
        let set = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                kernel_flags |= sys::SECCOMP_FILTER_FLAG_TSYNC;
                ctx.set_ctl_tsync(true).map(|_| ())
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {
                kernel_flags |= sys::SECCOMP_FILTER_FLAG_LOG;
                ctx.set_ctl_log(true).map(|_| ())
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                kernel_flags |= sys::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
                ctx.set_ctl_ssb(true).map(|_| ())
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                wait_killable = Some(field);
                continue;
            }
        };
        set.map_err(|e| SeccompError::invalid(&field, format!("{} is not supported here: {e}", spec_name(flag))))?;
    }

    for (i, rule) in profile.syscalls().iter().flatten().enumerate() {
        add_rule(&mut ctx, &format!("{ROOT}.syscalls[{i}]"), rule, default)?;
    }
    let direct = match wait_killable {
        Some(field) => Some(wait_killable_filter(&ctx, &field, notify, kernel_flags)?),
        None => None,
    };
    Ok(Filter { ctx, notify, direct })
}

/// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19): once the agent has
/// received a task's notification, only a fatal signal ends the task's wait
/// for the answer (a signal would otherwise restart the syscall, and a
/// non-idempotent one the agent already acted on). libseccomp before 2.6 has no attribute for it, so the
/// program is exported and loaded with seccomp(2), with the listener and
/// the other flags. The flag only means something for a listener: the
/// kernel refuses it without one, and so does hull, by name.
fn wait_killable_filter(ctx: &ScmpFilterContext, field: &str, notify: bool, flags: u32) -> Result<(Vec<u8>, u32), SeccompError> {
    use std::io::{Read, Seek};
    if !notify {
        return Err(SeccompError::invalid(
            field,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule (it applies to the notification listener)",
        ));
    }
    let mut flags = flags | sys::SECCOMP_FILTER_FLAG_NEW_LISTENER | sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    // The kernel takes TSYNC with a listener only with TSYNC_ESRCH (as
    // libseccomp passes it).
    if flags & sys::SECCOMP_FILTER_FLAG_TSYNC != 0 {
        flags |= sys::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
    }
    if !sys::seccomp_flags_known(flags) {
        return Err(SeccompError::unsupported(field, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: this kernel does not have it (Linux 5.19+)"));
    }
    let kernel = |what: &str| {
        let what = what.to_string();
        move |source| SeccompError::Kernel { what, source }
    };
    let memfd = nix::sys::memfd::memfd_create(c"hull-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Kernel { what: "memfd for the BPF program".into(), source: e.into() })?;
    let mut file = std::fs::File::from(memfd);
    ctx.export_bpf(&file).map_err(SeccompError::lib("export the BPF program"))?;
    let mut prog = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut prog))
        .map_err(kernel("read back the BPF program"))?;
    Ok((prog, flags))
}

fn add_rule(ctx: &mut ScmpFilterContext, field: &str, rule: &LinuxSyscall, default: ScmpAction) -> Result<(), SeccompError> {
    if rule.names().is_empty() {
        return Err(SeccompError::invalid(format!("{field}.names"), "must name at least one syscall"));
    }
    let act = action(&format!("{field}.errnoRet"), rule.action(), rule.errno_ret())?;
    let args = rule.args().as_deref().unwrap_or(&[]);
    let mut per_index = [0usize; MAX_ARGS];
    let mut conditions = Vec::with_capacity(args.len());
    for (j, arg) in args.iter().enumerate() {
        let c = condition(&format!("{field}.args[{j}]"), arg)?;
        per_index[arg.index()] += 1;
        conditions.push(c);
    }
    // libseccomp ANDs the conditions of one rule and allows one condition
    // per argument. Several conditions on the same argument cannot all hold
    // for `==`, so (as runc does) each becomes a rule of its own: an OR.
    let rules: Vec<Vec<ScmpArgCompare>> =
        if per_index.iter().any(|n| *n > 1) { conditions.into_iter().map(|c| vec![c]).collect() } else { vec![conditions] };
    for (k, name) in rule.names().iter().enumerate() {
        let Ok(nr) = ScmpSyscall::from_name(name) else {
            log::debug!("seccomp: {field}.names[{k}]: unknown syscall {name:?} skipped");
            continue;
        };
        if act == default {
            // libseccomp refuses a rule that repeats the default action.
            log::debug!("seccomp: {field}: {name} has the default action; no rule needed");
            continue;
        }
        for conds in &rules {
            ctx.add_rule_conditional(act, nr, conds)
                .map_err(|e| SeccompError::invalid(format!("{field}.names[{k}]"), format!("cannot add a rule for {name}: {e}")))?;
        }
    }
    Ok(())
}

/// The libseccomp action for a spec action; ERRNO and TRACE carry
/// errnoRet, EPERM when it is absent (as runc).
fn action(errno_field: &str, a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let code = || -> Result<u16, SeccompError> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(n) => {
                u16::try_from(n).map_err(|_| SeccompError::invalid(errno_field, format!("{n} does not fit the 16 bits the kernel returns")))
            }
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(code()? as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(code()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// One argument comparison. For SCMP_CMP_MASKED_EQ, `value` is the mask and
/// `valueTwo` what the masked argument must equal (the spec's and runc's
/// reading); the other operators compare with `value`.
fn condition(field: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    if arg.index() >= MAX_ARGS {
        return Err(SeccompError::invalid(
            format!("{field}.index"),
            format!("{} is out of range: syscalls have arguments 0 to {}", arg.index(), MAX_ARGS - 1),
        ));
    }
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0)),
    };
    Ok(ScmpArgCompare::new(arg.index() as u32, op, datum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: serde_json::Value) -> String {
        compile(&profile(v)).unwrap_err().to_string()
    }

    #[test]
    fn errno_defaults_to_eperm_and_takes_errno_ret() {
        let a = action("e", LinuxSeccompAction::ScmpActErrno, None).unwrap();
        assert_eq!(a, ScmpAction::Errno(libc::EPERM));
        let a = action("e", LinuxSeccompAction::ScmpActErrno, Some(38)).unwrap();
        assert_eq!(a, ScmpAction::Errno(38));
        assert_eq!(action("e", LinuxSeccompAction::ScmpActKill, None).unwrap(), ScmpAction::KillThread);
        let e = action("x.errnoRet", LinuxSeccompAction::ScmpActErrno, Some(70000)).unwrap_err().to_string();
        assert!(e.contains("x.errnoRet"), "{e}");
    }

    #[test]
    fn masked_eq_uses_value_as_mask() {
        let arg: LinuxSeccompArg =
            serde_json::from_value(serde_json::json!({"index": 0, "value": 0x7E020000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}))
                .unwrap();
        let c = condition("f", &arg).unwrap();
        assert_eq!(c, ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0x7E020000), 0));
        let arg: LinuxSeccompArg = serde_json::from_value(serde_json::json!({"index": 1, "value": 5, "op": "SCMP_CMP_NE"})).unwrap();
        assert_eq!(condition("f", &arg).unwrap(), ScmpArgCompare::new(1, ScmpCompareOp::NotEqual, 5));
    }

    #[test]
    fn a_full_profile_compiles_and_skips_unknown_names() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}
            ]
        })))
        .unwrap();
        assert!(!f.bpf().unwrap().is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(e.contains("linux.seccomp.syscalls[0].args[0].index"), "{e}");
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "relative.sock"}));
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
        // SCMP_ACT_NOTIFY needs the agent's socket
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert!(e.contains("linux.seccomp.listenerPath"), "{e}");
        let f = compile(&profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
        .unwrap();
        assert!(f.notify);
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(e.contains("linux.seccomp.syscalls[0].names"), "{e}");
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 100000}));
        assert!(e.contains("linux.seccomp.defaultErrnoRet"), "{e}");
    }

    #[test]
    fn wait_killable_recv_is_loaded_with_the_listener() {
        let e = err(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
        assert!(e.contains("linux.seccomp.flags[0]") && e.contains("SCMP_ACT_NOTIFY"), "{e}");
        let known = sys::seccomp_flags_known(sys::SECCOMP_FILTER_FLAG_NEW_LISTENER | sys::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV);
        let r = compile(&profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})));
        match r {
            Ok(f) => {
                assert!(known);
                let (prog, flags) = f.direct.as_ref().expect("loaded by hull");
                assert_eq!(*prog, f.bpf().unwrap());
                assert_eq!(*flags, 1 | 8 | 16 | 32);
            }
            Err(e) => assert!(!known && e.to_string().contains("5.19"), "{e}"),
        }
    }

    #[test]
    fn rule_with_the_default_action_is_skipped() {
        compile(&profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]})))
        .unwrap();
    }
}
