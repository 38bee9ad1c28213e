//! `terminal: true`: a pty made in the container's devpts, the master sent
//! to the caller's console socket with SCM_RIGHTS (as runc does), the slave
//! made the process's stdio and controlling terminal.
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::{Result, SysContext};
use crate::linux::syscall;

/// Set up the console and wire it to stdio. `socket` is a connected unix
/// socket to whoever wants the pty master. `bind_console`: also bind the
/// slave onto /dev/console — for the container's init only; an exec'd
/// process shares the container's mount namespace and leaves its
/// /dev/console alone (as runc's exec does).
pub fn setup(socket: &OwnedFd, size: Option<(u16, u16)>, bind_console: bool) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).sys_context(|| "open /dev/ptmx".into())?;
    grantpt(&master).sys_context(|| "grantpt".into())?;
    unlockpt(&master).sys_context(|| "unlockpt".into())?;
    let name = ptsname_r(&master).sys_context(|| "ptsname".into())?;
    let slave = nix::fcntl::open(Path::new(&name), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| format!("open {name}"))?;
    if let Some((rows, cols)) = size {
        syscall::set_window_size(slave.as_raw_fd(), rows, cols)?;
    }
    send_fd(socket, master.as_raw_fd(), name.as_bytes())?;
    drop(master);
    if bind_console {
        bind_dev_console(&name)?;
    }
    for fd in 0..3 {
        syscall::dup2_raw(slave.as_raw_fd(), fd)?;
    }
    syscall::set_controlling_terminal(0)
}

/// Programs expect /dev/console to be the terminal: bind the pty slave there.
fn bind_dev_console(slave: &str) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).sys_context(|| "create /dev/console".into())?;
    }
    nix::mount::mount(Some(slave), console, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .sys_context(|| format!("bind {slave} to /dev/console"))
}

/// Send one fd with a name as payload over a unix socket.
pub fn send_fd(socket: &OwnedFd, fd: RawFd, name: &[u8]) -> Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(name)];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).sys_context(|| "send pty master to console socket".into())?;
    Ok(())
}

/// Connect to the caller's console socket (done by hull before forking, so
/// the path is resolved on the host).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).sys_context(|| "console socket".into())?;
    let addr = UnixAddr::new(path).sys_context(|| format!("console socket path {}", path.display()))?;
    connect(fd.as_raw_fd(), &addr).sys_context(|| format!("connect to console socket {}", path.display()))?;
    Ok(fd)
}
