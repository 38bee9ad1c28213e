//! hull's built-in seccomp profile, with the same effect as the
//! "RuntimeDefault" profile of containerd and Docker: an allow-list whose
//! default answer is EPERM, a few argument filters (namespaces through
//! clone, personality values, no vsock sockets), and syscalls that are only
//! useful with a capability allowed only when the process may have it.
//!
//! The lists are grouped by what the syscalls do. Names a given libseccomp
//! or architecture does not know are skipped when the profile is compiled.
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Files, directories, links, extended attributes and fd plumbing.
const FILES: &[&str] = &[
    "_llseek",
    "access",
    "cachestat",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

/// Waiting on many fds, event and timer fds, classic AIO, ioctl.
const EVENTS: &[&str] = &[
    "_newselect",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "ioctl",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Address space management.
const MEMORY: &[&str] = &[
    "brk",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "remap_file_pages",
];

/// Processes, threads, credentials inside the namespace, scheduling,
/// limits and self-sandboxing.
const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "ptrace",
    "restart_syscall",
    "rseq",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "sysinfo",
    "times",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// Signals.
const SIGNALS: &[&str] = &[
    "alarm",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
];

/// Reading clocks, sleeping, timers. (adjtimex and clock_adjtime only set
/// the clock with CAP_SYS_TIME, which the kernel checks.)
const TIME: &[&str] = &[
    "adjtimex",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
];

/// Sockets, except socket(2) itself (see [`AF_VSOCK`]).
const NETWORK: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// System V and POSIX IPC (the container has its own IPC namespace).
const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Syscalls that exist only on some architectures.
fn arch_specific() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "x86") {
        &["modify_ldt"]
    } else if cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        &["arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls", "sync_file_range2"]
    } else if cfg!(target_arch = "powerpc64") {
        &["swapcontext", "sync_file_range2"]
    } else if cfg!(target_arch = "s390x") {
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]
    } else if cfg!(target_arch = "riscv64") {
        &["riscv_flush_icache"]
    } else {
        &[]
    }
}

/// The architectures a process of this machine may run code for.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390, Arch::ScmpArchS390x]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else {
        Vec::new()
    }
}

/// Syscalls opened up by one capability in the bounding set. Without the
/// capability the kernel would refuse most of them anyway; the filter keeps
/// their (often large) kernel code out of reach.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "finit_module", "init_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (Capability::SysTime, &["clock_settime", "clock_settime64", "settimeofday", "stime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// personality(2) values a container may ask for: PER_LINUX (0),
/// PER_LINUX32 (8), UNAME26 (0x20000), PER_LINUX32|UNAME26, and 0xffffffff
/// (which only reads the current value).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The namespace flags of clone(2): without CAP_SYS_ADMIN they must be clear.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Address family of vsock (host-guest sockets): refused in containers.
const AF_VSOCK: u64 = 40;

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    s
}

fn allow_if(name: &str, index: usize, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSyscall {
    let mut arg = LinuxSeccompArgBuilder::default().index(index).op(op).value(value);
    if let Some(v) = value_two {
        arg = arg.value_two(v);
    }
    let arg = arg.build().expect("every field is set");
    let mut s = allow(&[name]);
    s.set_args(Some(vec![arg]));
    s
}

/// The default profile for a process whose bounding capability set is
/// `caps`. Later layers (pods, CRI's `RuntimeDefault`) ask for it here;
/// `hull spec --seccomp-default` prints it.
pub fn runtime_default(caps: &Capabilities) -> LinuxSeccomp {
    let mut rules = Vec::new();
    let mut everyone: Vec<&str> = [FILES, EVENTS, MEMORY, PROCESSES, SIGNALS, TIME, NETWORK, IPC, arch_specific()].concat();
    everyone.sort_unstable();
    rules.push(allow(&everyone));
    for p in PERSONALITIES {
        rules.push(allow_if("personality", 0, LinuxSeccompOperator::ScmpCmpEq, *p, None));
    }
    rules.push(allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, None));
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(cap) {
            rules.push(allow(names));
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        // clone's flags are its first argument, except on s390 where the
        // first two arguments are swapped.
        let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.push(allow_if("clone", index, LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, Some(0)));
        // clone3 passes its flags in memory, where the filter cannot look:
        // answer ENOSYS so that libcs fall back to clone.
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".into()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        rules.push(clone3);
    }
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    let arches = architectures();
    profile.set_architectures((!arches.is_empty()).then_some(arches));
    profile.set_syscalls(Some(rules));
    profile
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_allowed(p: &LinuxSeccomp) -> Vec<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn without_sys_admin_namespaces_and_mounts_are_closed() {
        let caps: Capabilities = [Capability::Kill, Capability::NetBindService].into_iter().collect();
        let p = runtime_default(&caps);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        let allowed = names_allowed(&p);
        for n in ["read", "execve", "uname", "mkdirat", "close_range", "openat2"] {
            assert!(allowed.iter().any(|a| a == n), "{n} should be allowed");
        }
        for n in ["mount", "unshare", "setns", "bpf", "reboot", "kexec_load", "open_by_handle_at", "socket", "io_uring_setup"] {
            assert!(!allowed.iter().any(|a| a == n), "{n} should not be allowed unconditionally");
        }
        let clone = p.syscalls().iter().flatten().find(|s| s.names() == &vec!["clone".to_string()]).unwrap();
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7E02_0000);
        let clone3 = p.syscalls().iter().flatten().find(|s| s.names() == &vec!["clone3".to_string()]).unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
        let socket = p.syscalls().iter().flatten().find(|s| s.names() == &vec!["socket".to_string()]).unwrap();
        assert_eq!(socket.args().as_ref().unwrap()[0].value(), 40);
    }

    #[test]
    fn capabilities_open_their_sections() {
        let caps: Capabilities = [Capability::SysAdmin, Capability::SysPtrace, Capability::SysTime].into_iter().collect();
        let p = runtime_default(&caps);
        let allowed = names_allowed(&p);
        for n in ["mount", "unshare", "clone", "clone3", "kcmp", "settimeofday"] {
            assert!(allowed.iter().any(|a| a == n), "{n} should be allowed");
        }
        assert!(!p.syscalls().iter().flatten().any(|s| s.action() == LinuxSeccompAction::ScmpActErrno));
    }

    #[test]
    fn the_profile_compiles_and_round_trips_as_json() {
        let caps: Capabilities = [Capability::AuditWrite, Capability::Kill].into_iter().collect();
        let p = runtime_default(&caps);
        super::super::compile(&p).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        let back: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
