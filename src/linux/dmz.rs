//! A container's init that is not hull when it execs (CVE-2019-5736,
//! without re-executing hull).
//!
//! The guard in `linux::syscall` re-executes a container-facing command
//! from a read-only copy of hull so that nothing in a container can reach
//! the host binary through /proc/PID/exe: one more exec of the whole 10 MB
//! hull (loader, relocations, page faults), a few ms of every `run` and
//! `create`. For a plain `create` nothing else needs it: in a new PID
//! namespace, with no hooks run in the container, no process of the
//! container exists before the init's execve, so the only way to reach the
//! host binary is that execve itself (a program `#!/proc/self/exe`, as in
//! the CVE, has the kernel run the caller's executable as its
//! interpreter). The init therefore execs the program through this tiny
//! static x86_64 program in a sealed memfd, which execs the program in its
//! turn: whatever the container execs or opens through /proc then is the
//! sealed trampoline, never hull.
//!
//! Where that is not enough or not sure (an existing or the host PID
//! namespace, createContainer or startContainer hooks, an LSM exec label,
//! which would apply to the trampoline's exec, a seccomp profile that
//! might refuse execveat, no exec-able memfd, another architecture), the
//! command re-executes itself protected as before ([`arm`] says which).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use crate::oci::config::Bundle;
use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, LinuxSeccompAction, Spec};

/// What the init of a `create` made by this process execs through.
static TRAMPOLINE: OnceLock<OwnedFd> = OnceLock::new();

/// Where the code starts: after the ELF header and two program headers.
const CODE: usize = 64 + 2 * 56;
const BASE: u64 = 0x40_0000;
const MESSAGE: &[u8] = b"container init: exec of the program failed\n";

/// The trampoline's machine code, run with the stack the kernel sets up:
/// `[rsp]` argc, then argv, NULL, envp. Called as `TRAMPOLINE PATH ARGV...`
/// it is `execve(argv[1], &argv[2], envp)`; with fewer than three
/// arguments (the `#!/proc/self/exe` case) or when execve fails it writes
/// [`MESSAGE`] to stderr and exits 127, the status hull's init exits with
/// when its own exec fails.
#[rustfmt::skip]
const TEXT: [u8; 0x44] = [
    0x48, 0x8b, 0x0c, 0x24,             // 00 mov  rcx, [rsp]            argc
    0x48, 0x83, 0xf9, 0x03,             // 04 cmp  rcx, 3
    0x7c, 0x16,                         // 08 jl   0x20
    0x48, 0x8b, 0x7c, 0x24, 0x10,       // 0a mov  rdi, [rsp+16]         argv[1]
    0x48, 0x8d, 0x74, 0x24, 0x18,       // 0f lea  rsi, [rsp+24]         &argv[2]
    0x48, 0x8d, 0x54, 0xcc, 0x10,       // 14 lea  rdx, [rsp+rcx*8+16]   envp
    0xb8, 0x3b, 0x00, 0x00, 0x00,       // 19 mov  eax, 59               execve
    0x0f, 0x05,                         // 1e syscall
    0xbf, 0x02, 0x00, 0x00, 0x00,       // 20 mov  edi, 2
    0x48, 0x8d, 0x35, 0x18, 0x00, 0x00, 0x00, // 25 lea rsi, [rip+0x18]  MESSAGE at 0x44
    0xba, MESSAGE.len() as u8, 0x00, 0x00, 0x00, // 2c mov edx, len
    0xb8, 0x01, 0x00, 0x00, 0x00,       // 31 mov  eax, 1                write
    0x0f, 0x05,                         // 36 syscall
    0xbf, 0x7f, 0x00, 0x00, 0x00,       // 38 mov  edi, 127
    0xb8, 0xe7, 0x00, 0x00, 0x00,       // 3d mov  eax, 231              exit_group
    0x0f, 0x05,                         // 42 syscall
];

/// The trampoline as an ELF executable: one read+execute PT_LOAD of the
/// whole file at [`BASE`], and a PT_GNU_STACK that keeps the stack
/// non-executable.
pub fn image() -> Vec<u8> {
    let len = (CODE + TEXT.len() + MESSAGE.len()) as u64;
    let mut f = Vec::with_capacity(len as usize);
    // e_ident: ELF, 64-bit, little endian, version 1, System V ABI.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(BASE + CODE as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 2, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        f.extend_from_slice(&half.to_le_bytes());
    }
    let phdr = |f: &mut Vec<u8>, typ: u32, flags: u32, size: u64, align: u64| {
        f.extend_from_slice(&typ.to_le_bytes());
        f.extend_from_slice(&flags.to_le_bytes());
        let vaddr = if size == 0 { 0 } else { BASE };
        for word in [0, vaddr, vaddr, size, size, align] {
            f.extend_from_slice(&word.to_le_bytes());
        }
    };
    phdr(&mut f, 1, 5, len, 0x1000); // PT_LOAD, R+X
    phdr(&mut f, 0x6474_e551, 6, 0, 16); // PT_GNU_STACK, RW
    f.extend_from_slice(&TEXT);
    f.extend_from_slice(MESSAGE);
    f
}

/// Decide how this `create` or `run` guards the host binary: its loaded
/// bundle (for the create to use) when its init will exec through the
/// trampoline (armed, see the module comment), None when the command must
/// re-execute itself protected. A bundle that does not load is the full
/// create's to report, after that re-exec.
pub fn arm(bundle: &Path, preserve_fds: i32) -> Option<Bundle> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let bundle = Bundle::load(bundle).ok().filter(|b| fits(&b.spec))?;
    match sealed_trampoline(preserve_fds) {
        Ok(fd) => TRAMPOLINE.set(fd).is_ok().then_some(bundle),
        Err(e) => {
            log::debug!("no trampoline memfd ({e}): re-executing protected");
            None
        }
    }
}

/// True when nothing of the container can run before the init's execve
/// and the trampoline's exec behaves as the program's own would.
pub fn fits(spec: &Spec) -> bool {
    let linux = spec.linux().as_ref();
    let own_pid_ns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none()));
    let hooks = spec.hooks().as_ref();
    let in_container_hooks = hooks.is_some_and(|h| {
        h.create_container().as_ref().is_some_and(|v| !v.is_empty()) || h.start_container().as_ref().is_some_and(|v| !v.is_empty())
    });
    let set = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    let labels = spec.process().as_ref().is_some_and(|p| set(p.apparmor_profile()) || set(p.selinux_label()));
    let seccomp_ok = linux.and_then(|l| l.seccomp().as_ref()).is_none_or(allows_execveat);
    own_pid_ns && !in_container_hooks && !labels && seccomp_ok
}

/// Whether a profile surely lets execveat through, whatever its
/// arguments: only the default allow with no rule naming it, or one
/// argument-free allow rule naming it and no other.
fn allows_execveat(profile: &LinuxSeccomp) -> bool {
    let rules: Vec<_> = profile.syscalls().iter().flatten().filter(|r| r.names().iter().any(|n| n == "execveat")).collect();
    match rules.as_slice() {
        [] => profile.default_action() == LinuxSeccompAction::ScmpActAllow,
        [r] => r.action() == LinuxSeccompAction::ScmpActAllow && r.args().as_ref().is_none_or(|a| a.is_empty()),
        _ => false,
    }
}

/// The trampoline in a sealed, close-on-exec memfd, at an fd number
/// above the ones `--preserve-fds` passes on.
fn sealed_trampoline(preserve_fds: i32) -> std::io::Result<OwnedFd> {
    let memfd = crate::linux::syscall::sealed_memfd(c"hull-init", &mut &image()[..])?;
    let above = 64.max(preserve_fds.saturating_add(3));
    let high = nix::fcntl::fcntl(&memfd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above)).map_err(std::io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

/// The armed trampoline, if this process armed one.
pub fn armed() -> Option<&'static OwnedFd> {
    TRAMPOLINE.get()
}

/// execveat(2) of the trampoline with `PATH ARGV...`. Returns only on
/// failure.
pub fn exec(trampoline: &OwnedFd, path: &std::ffi::CStr, argv: &[std::ffi::CString], envp: &[std::ffi::CString]) -> std::io::Error {
    let first = argv.first().map(|a| a.as_ptr()).unwrap_or(path.as_ptr());
    let mut args: Vec<*const libc::c_char> = vec![first, path.as_ptr()];
    args.extend(argv.iter().map(|a| a.as_ptr()));
    args.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: execveat reads the empty path and the NULL-terminated arrays
    // of pointers into `path`, `argv` and `envp`, all alive here; it
    // returns only on failure.
    unsafe {
        libc::syscall(libc::SYS_execveat, trampoline.as_raw_fd(), c"".as_ptr(), args.as_ptr(), env.as_ptr(), libc::AT_EMPTY_PATH);
    }
    std::io::Error::last_os_error()
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::process::Command;

    /// The memfd, made inheritable, as a path a child can exec.
    fn trampoline_path() -> (OwnedFd, String) {
        let fd = sealed_trampoline(0).unwrap();
        let plain = nix::unistd::dup(&fd).unwrap();
        let path = format!("/proc/self/fd/{}", plain.as_raw_fd());
        (plain, path)
    }

    #[test]
    fn execs_the_program_with_its_argv_and_env() {
        let (_fd, path) = trampoline_path();
        let out = Command::new(&path)
            .args(["/bin/sh", "sh", "-c", "echo \"$0 $1 $X\"", "zero", "one"])
            .env_clear()
            .env("X", "env")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "zero one env\n");
    }

    #[test]
    fn fails_with_127_and_a_message() {
        let (_fd, path) = trampoline_path();
        for args in [&["/no/such/program", "x"][..], &["/bin/sh"][..], &[][..]] {
            let out = Command::new(&path).args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(127), "{args:?}: {out:?}");
            assert_eq!(out.stderr, MESSAGE, "{args:?}");
        }
    }

    #[test]
    fn is_sealed() {
        let fd = sealed_trampoline(0).unwrap();
        let mut f = std::fs::File::from(fd);
        assert!(std::io::Write::write_all(&mut f, b"x").is_err());
        assert!(f.set_len(1).is_err());
    }

    #[test]
    fn fits_only_a_new_pid_namespace_without_hooks_labels_or_doubtful_seccomp() {
        let base: serde_json::Value = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}
        });
        let spec = |edit: &dyn Fn(&mut serde_json::Value)| -> Spec {
            let mut v = base.clone();
            edit(&mut v);
            serde_json::from_value(v).unwrap()
        };
        assert!(fits(&spec(&|_| {})));
        assert!(!fits(&spec(&|v| v["linux"]["namespaces"][0]["path"] = "/proc/1/ns/pid".into())));
        assert!(!fits(&spec(&|v| v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]))));
        assert!(!fits(&spec(&|v| v["hooks"] = serde_json::json!({"startContainer": [{"path": "/bin/true"}]}))));
        assert!(!fits(&spec(&|v| v["hooks"] = serde_json::json!({"createContainer": [{"path": "/bin/true"}]}))));
        assert!(fits(&spec(&|v| v["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}]}))));
        assert!(!fits(&spec(&|v| v["process"]["apparmorProfile"] = "p".into())));
        assert!(!fits(&spec(&|v| v["process"]["selinuxLabel"] = "l".into())));
        let seccomp = |s: serde_json::Value| spec(&move |v: &mut serde_json::Value| v["linux"]["seccomp"] = s.clone());
        assert!(fits(&seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}))));
        assert!(!fits(&seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO"}))));
        assert!(fits(&seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["execve", "execveat"], "action": "SCMP_ACT_ALLOW"}]}))));
        assert!(!fits(&seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]}))));
        assert!(!fits(&seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 4, "value": 0, "op": "SCMP_CMP_EQ"}]}]}))));
        let default = crate::seccomp::runtime_default(&Default::default());
        let mut s = spec(&|_| {});
        s.linux_mut().as_mut().unwrap().set_seccomp(Some(default));
        assert!(fits(&s), "the default profile allows execveat");
    }
}
