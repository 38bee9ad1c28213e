//! The few places where hull needs `unsafe` or raw syscalls that nix does not
//! wrap. Every block says why it is sound.
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::error::{Result, SysContext};

/// What `fork` returned, in the process that sees it.
pub enum Forked {
    Parent(nix::unistd::Pid),
    Child,
}

/// fork(2), refused when this process has more than one thread: the child
/// of a multi-threaded process gets only the forking thread, and a lock
/// (malloc's, stdio's, a Mutex) held by another thread at that moment stays
/// locked forever in the child. Multi-threaded callers (the CRI server, the
/// runtime layer's users) start a hull binary instead, which forks from its
/// own single thread.
pub fn fork() -> Result<Forked> {
    let mut threads = thread_count()?;
    // A thread that was just joined (a dropped Runtime's watcher or
    // reaper) is counted until the kernel has released it, a little after
    // the join returned: give it a few ms (bounded) before refusing.
    for _ in 0..50 {
        if threads == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        threads = thread_count()?;
    }
    if threads != 1 {
        return Err(crate::error::Error::InvalidState(format!(
            "refusing to fork: this process has {threads} threads (a forked child could deadlock); run a hull subcommand instead"
        )));
    }
    // SAFETY: the process is single-threaded (checked just above; nothing
    // between the check and the fork starts a thread), so no lock can be
    // held by a thread that does not exist in the child.
    match unsafe { nix::unistd::fork() }.sys_context(|| "fork".into())? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// The host's /proc, opened once: a process that has since joined a
/// container's mount namespace (exec, the container's init) still finds
/// itself there through `self/status`, which the container's /proc (another
/// pid namespace, or none mounted yet) would not show.
fn host_proc() -> Option<&'static OwnedFd> {
    static PROC: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    PROC.get_or_init(|| {
        nix::fcntl::open("/proc", nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).ok()
    })
    .as_ref()
}

/// The `Threads:` count of this process's /proc status.
pub fn thread_count() -> Result<usize> {
    let via_fd = host_proc().and_then(|d| {
        let fd =
            nix::fcntl::openat(d, "self/status", nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .ok()?;
        std::io::read_to_string(File::from(fd)).ok()
    });
    let status = match via_fd {
        Some(s) => s,
        None => std::fs::read_to_string("/proc/self/status").sys_context(|| "read /proc/self/status".into())?,
    };
    parse_thread_count(&status).ok_or_else(|| crate::error::Error::InvalidState("/proc/self/status has no Threads: line".into()))
}

fn parse_thread_count(status: &str) -> Option<usize> {
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

/// Mark every fd >= `first` close-on-exec, so nothing of the host leaks into
/// the container's program (CVE-2024-21626 was a leaked cgroup dir fd).
pub fn cloexec_from(first: RawFd) -> Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds;
    // it touches no memory.
    let rc = unsafe {
        libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint)
    };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: walk /proc/self/fd instead.
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .sys_context(|| "read /proc/self/fd".into())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a possibly-closed fd fails harmlessly with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Clear close-on-exec on an fd that must survive exec (`--preserve-fds`,
/// the console slave duplicated onto stdio).
pub fn clear_cloexec(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl flag change, no memory involved.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).sys_context(|| format!("clear FD_CLOEXEC on fd {fd}"));
    }
    Ok(())
}

/// dup2 that takes raw fd numbers (used to wire stdio just before exec).
pub fn dup2_raw(from: RawFd, to: RawFd) -> Result<()> {
    // SAFETY: dup2 only manipulates the fd table.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(std::io::Error::last_os_error()).sys_context(|| format!("dup2 {from} -> {to}"));
    }
    Ok(())
}

pub fn setdomainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, alive for the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).sys_context(|| format!("setdomainname {name:?}"));
    }
    Ok(())
}

pub fn setrlimit(resource: libc::c_int, soft: u64, hard: u64) -> std::io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `lim` is a valid rlimit struct on the stack. The cast of the
    // resource number matches glibc's __rlimit_resource_t (an int-sized enum).
    if unsafe { libc::setrlimit(resource as _, &lim) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Give the container a session keyring of its own, so it cannot read the
/// keys of the session hull was started from.
pub fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let cname = CString::new(name).unwrap_or_default();
    // SAFETY: keyctl(JOIN_SESSION_KEYRING) reads the NUL-terminated name.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, cname.as_ptr()) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        // Kernels without keyring support, or a keyring quota we cannot raise.
        if matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EDQUOT)) {
            log::warn!("session keyring {name}: {e}; the container shares hull's");
            return Ok(());
        }
        return Err(e).sys_context(|| format!("join session keyring {name}"));
    }
    Ok(())
}

/// Bring up `lo` in the current network namespace.
pub fn set_loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .sys_context(|| "socket for loopback".into())?;
    // SAFETY: ifreq is plain data; the ioctls read/write it on our stack.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error()).sys_context(|| "SIOCGIFFLAGS lo".into());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error()).sys_context(|| "bring lo up".into());
        }
    }
    Ok(())
}

/// What a long-lived helper (a container's monitor, a sandbox holder)
/// calls once it is set up, just before it first blocks: drop the code
/// pages it no longer runs and the stack set-up used
/// ([`trim_resident_code`]), then hand the heap's free pages back to the
/// kernel (set-up parsed configs and specs; glibc keeps freed memory for
/// reuse unless asked, and the smaps read is one more such block).
pub fn shrink_resident() {
    trim_resident_code();
    // SAFETY: malloc_trim only releases free memory of malloc's own heap.
    unsafe { libc::malloc_trim(0) };
}

/// One malloc arena for the process: glibc gives each thread that
/// allocates an arena of its own (64 MiB of address space, pages that are
/// rarely returned); a helper that runs the odd thread needs none of that.
/// Call before any thread starts.
pub fn single_malloc_arena() {
    // SAFETY: mallopt sets a malloc parameter; no pointers involved.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// A mapping of ours, as /proc/self/smaps lists it.
struct Mapping {
    start: usize,
    end: usize,
    /// A private read-only file mapping (hull's or a library's code and
    /// constants, or relocated data made read-only).
    readonly_file: bool,
    stack: bool,
    /// KiB of copied-on-write (anonymous) pages in it.
    anonymous_kib: u64,
}

fn own_mappings() -> Vec<Mapping> {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = f.next().unwrap_or("");
            let path = line.split_whitespace().nth(5).unwrap_or("");
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let file_backed = !path.is_empty() && !path.starts_with('[');
                out.push(Mapping {
                    start,
                    end,
                    readonly_file: file_backed && (perms == "r-xp" || perms == "r--p"),
                    stack: path == "[stack]",
                    anonymous_kib: 0,
                });
            }
            continue;
        }
        if first == "Anonymous:" {
            if let (Some(m), Some(kib)) = (out.last_mut(), f.next().and_then(|v| v.parse().ok())) {
                m.anonymous_kib = kib;
            }
        }
    }
    out
}

/// Drop this process's resident read-only file pages (hull's and the
/// shared libraries' code and constants) and the stack below the caller: a
/// long-lived helper (the container monitor) ran a lot of code once to set
/// up and then loops in a little; what it needs again faults back in from
/// the page cache (file pages) or as zero pages (stack it grows into
/// again). Of a private read-only file mapping only the pages that are
/// still the file's are dropped, never a copied-on-write one (relocated
/// data, the GOT), so nothing can be lost.
pub fn trim_resident_code() {
    let maps = own_mappings();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for m in &maps {
        if m.readonly_file && m.anonymous_kib == 0 {
            ranges.push((m.start, m.end));
        } else if m.readonly_file {
            file_page_runs(m.start, m.end, &mut ranges);
        }
    }
    for (start, end) in ranges {
        // SAFETY: a range of a private, read-only file mapping of ours
        // holding no copied-on-write page: MADV_DONTNEED only unmaps pages
        // that refault unchanged from the file. Read-only, so no page can
        // become copied-on-write in between.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    if let Some(stack) = maps.iter().find(|m| m.stack) {
        drop_stack_below_caller(stack.start, stack.end);
    }
}

/// The runs of pages of [start, end) that are resident and still the
/// file's (not copied-on-write), from /proc/self/pagemap: one u64 per
/// page, bit 63 present, bit 61 a file page (or shared anonymous).
fn file_page_runs(start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    const PRESENT: u64 = 1 << 63;
    const FILE: u64 = 1 << 61;
    let page = page_size();
    let Ok(f) = File::open("/proc/self/pagemap") else { return };
    let pages = (end - start) / page;
    let mut raw = vec![0u8; pages * 8];
    if std::os::unix::fs::FileExt::read_exact_at(&f, &mut raw, (start / page * 8) as u64).is_err() {
        return;
    }
    let mut run: Option<usize> = None;
    for (i, e) in raw.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
        let addr = start + i * page;
        let droppable = entry & PRESENT != 0 && entry & FILE != 0;
        match (droppable, run) {
            (true, None) => run = Some(addr),
            (false, Some(s)) => {
                out.push((s, addr));
                run = None;
            }
            _ => {}
        }
    }
    if let Some(s) = run {
        out.push((s, end));
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes a constant and touches no memory.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Drop the pages of the main stack more than 16 KiB below this frame:
/// set-up ran deep (config parsing, the container's create) and left them
/// resident; no live frame is there (the stack grows down, and the x86-64
/// red zone is 128 bytes), and what the loop grows into again comes back
/// as zero pages. Nothing is done on another thread's stack.
#[inline(never)]
fn drop_stack_below_caller(stack_start: usize, stack_end: usize) {
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    if !(stack_start..stack_end).contains(&here) {
        return;
    }
    let page = page_size();
    let end = (here & !(page - 1)).saturating_sub(16 * 1024);
    if end > stack_start {
        // SAFETY: [stack_start, end) is the unused part of our own stack
        // (below every live frame, with a 16 KiB margin for the madvise
        // call itself); its pages are private anonymous memory that no one
        // reads before writing it again.
        unsafe { libc::madvise(stack_start as *mut libc::c_void, end - stack_start, libc::MADV_DONTNEED) };
    }
}

/// One recv(2) of up to `max` bytes into a fresh buffer that is not zeroed
/// first (zeroing 64 KiB for a message of a few bytes cost more than the
/// rest of the receive). One call, so a message is taken whole even when
/// another process reads the same socket, as the bootstrap and the init do.
pub fn recv_new(fd: RawFd, max: usize, flags: libc::c_int) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(max);
    // SAFETY: recv writes at most `max` bytes to the buffer's spare
    // capacity, which is at least `max`; set_len covers only the bytes it
    // reports written.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), max, flags) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the first n bytes were written by recv (n <= max).
    unsafe { buf.set_len(n as usize) };
    Ok(buf)
}

/// A pidfd for `pid` (pidfd_open(2), Linux 5.3): it polls readable once
/// the process has exited. None on kernels without it. The caller checks
/// afterwards that the pid still names the process it means (a pid can be
/// reused before the open).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags, no pointers; it returns a
    // new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh fd from the kernel that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Make the pty slave our controlling terminal (after setsid).
pub fn set_controlling_terminal(fd: RawFd) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument, no pointers.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error()).sys_context(|| "TIOCSCTTY".into());
    }
    Ok(())
}

pub fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives on our stack.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error()).sys_context(|| "TIOCSWINSZ".into());
    }
    Ok(())
}

/// Take ownership of an fd number that was inherited or passed to us.
///
/// # Safety
/// `fd` must be open and owned by nobody else in this process.
pub unsafe fn owned_fd(fd: RawFd) -> OwnedFd {
    OwnedFd::from_raw_fd(fd)
}

// --- CVE-2019-5736: never let the container reach a writable hull binary ---
//
// A container process that execs `/proc/self/exe` of a hull process that
// joined it (exec, or init before its execve) would be running the host's
// hull binary and could later reopen it for writing. hull therefore runs the
// container-facing commands from a copy that cannot be written:
//
// 1. preferred: a *detached, read-only bind mount* of the binary
//    (open_tree(OPEN_TREE_CLONE) + mount_setattr(MOUNT_ATTR_RDONLY)), exec'd
//    through its fd. No copy, no mount namespace change; the mount belongs to
//    no namespace, so nothing in a container can remount it, and writes
//    through /proc/PID/exe fail with EROFS.
// 2. fallback (kernels before 5.12, or no CAP_SYS_ADMIN): a sealed memfd copy.

const SEALED_MARKER_SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// True when this process's executable cannot be written: a sealed memfd,
/// or a file on a read-only mount (our detached bind, or a read-only /usr).
pub fn running_from_protected_binary() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    if let Ok(st) = nix::sys::statvfs::fstatvfs(&exe) {
        if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            return true;
        }
    }
    // SAFETY: F_GET_SEALS on a valid fd; fails with EINVAL on non-memfds.
    let seals = unsafe { libc::fcntl(exe.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALED_MARKER_SEALS == SEALED_MARKER_SEALS
}

/// Re-execute the current command from a copy of hull that cannot be
/// written. Returns only on failure.
pub fn reexec_protected() -> Result<std::convert::Infallible> {
    let exe = match readonly_detached_binary(Path::new("/proc/self/exe")) {
        Ok(fd) => fd,
        Err(e) => {
            log::debug!("read-only bind of hull unavailable ({e}); using a sealed memfd copy");
            sealed_memfd_copy()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())).unwrap_or_default())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()).to_vec();
            kv.push(b'=');
            kv.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()));
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    let err = nix::unistd::fexecve(&exe, &args, &env).unwrap_err();
    Err(std::io::Error::from(err)).sys_context(|| "re-exec hull from its protected copy".into())
}

/// Layout of `struct mount_attr` for mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached, read-only bind mount of the binary at `path` (see above),
/// as an fd that `execve("/proc/self/fd/N")` runs: a long-lived process
/// that starts container-facing hull commands makes it once, and they
/// start already protected (one exec of hull less each).
pub fn readonly_detached_binary(path: &Path) -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let path = CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: open_tree reads a NUL-terminated path; returns a new fd or -1.
    let fd =
        unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads `attr` (size given) and the empty path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn sealed_memfd_copy() -> Result<OwnedFd> {
    let mut exe = File::open("/proc/self/exe").sys_context(|| "open /proc/self/exe".into())?;
    sealed_memfd(c"hull", &mut exe).sys_context(|| "sealed memfd copy of hull".into())
}

/// An executable, close-on-exec memfd named `name` holding what `contents`
/// reads, sealed against any change (the seals that
/// [`running_from_protected_binary`] looks for).
pub fn sealed_memfd(name: &std::ffi::CStr, contents: &mut dyn std::io::Read) -> std::io::Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create reads a NUL-terminated name; returns a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // Before Linux 6.3 there is no MFD_EXEC: memfds are executable.
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that nothing else owns.
    let mut memfd = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::copy(contents, &mut memfd)?;
    // SAFETY: F_ADD_SEALS with an int argument on our own memfd.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, SEALED_MARKER_SEALS) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(memfd))
}

/// _exit(2): end a forked child at once, without running the parent's
/// atexit handlers or flushing the stdio buffers it copied (which would
/// write the parent's pending output a second time).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Give the processes a forked child will start the signal state a program
/// expects: nothing blocked, SIGPIPE and SIGCHLD at their default actions.
/// Rust's runtime ignores SIGPIPE, and a supervisor may block signals or
/// ignore SIGCHLD (which would make waitpid fail with ECHILD); ignored
/// signals and the mask are inherited across fork and exec.
pub fn default_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).sys_context(|| "unblock signals".into())?;
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGPIPE, Signal::SIGCHLD] {
        // SAFETY: installing SIG_DFL runs no code of ours in signal context.
        unsafe { sigaction(sig, &dfl) }.sys_context(|| format!("reset {sig}"))?;
    }
    Ok(())
}

/// The last SIGTERM or SIGINT that [`note_stop_signals`]'s handler saw
/// (0: none).
static NOTED_STOP_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn note_stop_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    NOTED_STOP_SIGNAL.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Make SIGTERM and SIGINT be noted instead of killing the process, until
/// its real handlers are in place: a daemon told to stop while it starts
/// up then stops as soon as it can, and cleans up after itself. Not a
/// blocked mask, which threads and children would inherit; a handled
/// signal is back to its default action in an exec'd child.
pub fn note_stop_signals() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let note = SigAction::new(SigHandler::Handler(note_stop_signal), SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &note) }.sys_context(|| format!("handle {sig}"))?;
    }
    Ok(())
}

/// The stop signal [`note_stop_signals`]'s handler saw, if any.
pub fn noted_stop_signal() -> Option<nix::sys::signal::Signal> {
    match NOTED_STOP_SIGNAL.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        n => nix::sys::signal::Signal::try_from(n).ok(),
    }
}

/// SIGPIPE back to its default action (termination) for this process.
pub fn default_sigpipe() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_DFL runs no code of ours in signal context.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &dfl) };
}

/// Every catchable signal, real-time ones included, back to SIG_DFL and
/// nothing blocked: what a container's program should start with, whatever
/// hull's caller had ignored.
pub fn all_signals_default() -> Result<()> {
    default_signals()?;
    /// The kernel's `struct sigaction` for rt_sigaction(2) (x86_64 layout;
    /// glibc's wrapper refuses the two signals it reserves for itself).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installs SIG_DFL (no handler code); reads `dfl` only.
        unsafe {
            libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, std::ptr::null_mut::<KernelSigaction>(), 8usize)
        };
    }
    Ok(())
}

/// mount_setattr(2) with AT_RECURSIVE on the mount `fd` is the root of:
/// the attributes change on it and on every mount below it (what mount(2)
/// cannot do for the submounts of an rbind).
pub fn mount_setattr_recursive(fd: &OwnedFd, set: u64, clear: u64) -> std::io::Result<()> {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 };
    // SAFETY: mount_setattr reads `attr` (its size is passed) and the empty,
    // NUL-terminated path; `fd` is an open fd we own for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// open_tree(2) with OPEN_TREE_CLONE: a detached copy of the mount at
/// `path` (with its submounts when `recursive`), close-on-exec. Attributes
/// that only a detached mount may take (an idmapping) are set on it before
/// move_mount puts it in place.
pub fn open_tree_clone(path: &std::path::Path, recursive: bool) -> std::io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: open_tree reads the NUL-terminated path for the duration of
    // the call; the fd it returns is new and owned by nobody else.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, cpath.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd from the kernel, not yet owned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) MOUNT_ATTR_IDMAP on the detached mount `fd` (and its
/// submounts when `recursive`), mapping ids through the user namespace
/// `userns`.
pub fn mount_setattr_idmap(fd: &OwnedFd, userns: &OwnedFd, recursive: bool) -> std::io::Result<()> {
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    let attr = MountAttr { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: userns.as_raw_fd() as u64 };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: as in mount_setattr_recursive; both fds are open and ours
    // for the whole call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// move_mount(2) of the detached mount `fd` onto the directory or file
/// `target` is open on (an O_PATH fd resolved inside the rootfs).
pub fn move_mount_to(fd: &OwnedFd, target: &OwnedFd) -> std::io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both paths are the empty NUL-terminated string; both fds are
    // open and ours for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// seccomp(2) SECCOMP_FILTER_FLAG_* bits.
pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
pub const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
pub const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u32 = 4;
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: u32 = 8;
pub const SECCOMP_FILTER_FLAG_TSYNC_ESRCH: u32 = 16;
pub const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 32;
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;

/// The kernel's `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const u8,
}

/// Whether this kernel knows every bit of `flags` for
/// SECCOMP_SET_MODE_FILTER: with a NULL program a known set fails with
/// EFAULT, an unknown bit with EINVAL, and nothing is installed.
pub fn seccomp_flags_known(flags: u32) -> bool {
    // SAFETY: a NULL program is never read: the kernel checks the flags
    // first and fails with EFAULT on the copy.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, std::ptr::null::<SockFprog>()) };
    rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Install the classic-BPF program `prog` (struct sock_filter entries, 8
/// bytes each, as libseccomp exports them) with `flags`. Returns the
/// notification fd when `flags` has NEW_LISTENER.
pub fn seccomp_set_mode_filter(prog: &[u8], flags: u32) -> std::io::Result<Option<RawFd>> {
    let len = prog.len() / 8;
    if !prog.len().is_multiple_of(8) || len == 0 || len > libc::c_ushort::MAX as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let fprog = SockFprog { len: len as libc::c_ushort, filter: prog.as_ptr() };
    // SAFETY: `fprog` points at `len` whole 8-byte entries of `prog`, which
    // outlives the call; the kernel copies the program before returning.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog as *const SockFprog) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0).then_some(rc as RawFd))
}

/// The kernel's `struct sched_attr` (SCHED_ATTR_SIZE_VER0, 48 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
}

/// sched_setattr(2) for the calling thread (the process: hull's forked
/// children are single-threaded).
pub fn sched_setattr(attr: &SchedAttr) -> std::io::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: the kernel reads `a.size` bytes of a sched_attr on our stack.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0u32) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// ioprio_set(IOPRIO_WHO_PROCESS, self, class << 13 | level).
pub fn ioprio_set(class: u32, level: u32) -> std::io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = (class << 13) | level;
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio as libc::c_int) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// personality(2) with a new execution domain.
pub fn set_personality(persona: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: integer argument only; returns the previous persona or -1.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// set_mempolicy(2): `mode` with its MPOL_F_* flags or'ed in, and a node
/// mask of `mask.len() * 64` bits.
pub fn set_mempolicy(mode: libc::c_int, mask: &[libc::c_ulong]) -> std::io::Result<()> {
    let (ptr, maxnode) = if mask.is_empty() { (std::ptr::null(), 0) } else { (mask.as_ptr(), mask.len() * libc::c_ulong::BITS as usize) };
    // SAFETY: the kernel reads maxnode bits from `mask`, which holds exactly
    // that many; a null mask goes with maxnode 0.
    let rc = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode as libc::c_ulong) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod fork_tests {
    use super::*;

    #[test]
    fn thread_count_is_read_from_proc_status() {
        assert_eq!(parse_thread_count("Name:\tx\nThreads:\t7\nSigQ:\t0/1\n"), Some(7));
        assert_eq!(parse_thread_count("Name:\tx\n"), None);
    }

    #[test]
    fn fork_is_refused_in_a_multi_threaded_process() {
        // The test harness runs tests on threads: keep one more alive.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        assert!(thread_count().unwrap() > 1);
        match fork() {
            Err(e) => assert!(e.to_string().contains("threads"), "{e}"),
            Ok(Forked::Child) => exit_now(0),
            Ok(Forked::Parent(_)) => panic!("fork was allowed with several threads"),
        }
        drop(tx);
        t.join().unwrap();
    }
}
