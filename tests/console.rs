//! process.terminal = true with --console-socket: the runtime sends the pty
//! master over the unix socket (SCM_RIGHTS); the container's stdio is the
//! pty slave.

mod common;

use common::pty::*;
use common::*;
use serde_json::json;
use std::io::IoSliceMut;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// Accept one connection on `listener` (bounded wait) and receive one fd.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "runtime never connected to the console socket");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {}", e),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(WAIT_TIMEOUT)).unwrap();
    let mut buf = [0u8; 1024];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = nix::sys::socket::recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut space), nix::sys::socket::MsgFlags::empty())
        .expect("recvmsg on console socket");
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            assert_eq!(fds.len(), 1, "exactly one fd expected");
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no SCM_RIGHTS fd received on the console socket");
}

fn console_listener(env: &TestEnv) -> (UnixListener, std::path::PathBuf) {
    let path = env.bundle_path().join("console.sock");
    (UnixListener::bind(&path).expect("bind console socket"), path)
}

#[test]
fn terminal_with_console_socket() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("console");
    env.config["process"]["terminal"] = json!(true);
    env.sh("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo isatty; \
         test -c /dev/console && echo has-console; echo the-end; sleep 2");
    env.write_config();
    let (listener, sock) = console_listener(&env);
    let b = env.bundle_path();
    let o = env.run_keep_io(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    let master = receive_master(&listener);
    // the master really is a terminal
    assert_eq!(unsafe { libc::isatty(master.as_raw_fd()) }, 1);
    env.start_ok();
    let out = read_master(master, "the-end");
    let mut lines = out.lines();
    let tty = lines.next().unwrap_or("");
    assert!(tty.starts_with("/dev/pts/"), "tty printed {:?}; all output:\n{}", tty, out);
    assert!(out.contains("isatty\n"), "{}", out);
    assert!(out.contains("has-console\n"), "{}", out);
}

#[test]
fn terminal_console_size() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("console-size");
    env.config["process"]["terminal"] = json!(true);
    env.config["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    env.sh("stty size; echo the-end; sleep 2");
    env.write_config();
    let (listener, sock) = console_listener(&env);
    let b = env.bundle_path();
    let o = env.run_keep_io(&["run", "--detach", "--console-socket", sock.to_str().unwrap(), "--bundle", b.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    let master = receive_master(&listener);
    let out = read_master(master, "the-end");
    assert!(out.starts_with("33 101\n"), "{}", out);
}

#[test]
fn terminal_input_reaches_process() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("console-input");
    env.config["process"]["terminal"] = json!(true);
    env.sh("read line; echo got:$line; sleep 1");
    env.write_config();
    let (listener, sock) = console_listener(&env);
    let b = env.bundle_path();
    let o = env.run_keep_io(&["run", "--detach", "--console-socket", sock.to_str().unwrap(), "--bundle", b.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    let master = receive_master(&listener);
    let n = unsafe { libc::write(master.as_raw_fd(), b"hello-pty\n".as_ptr() as *const _, 10) };
    assert_eq!(n, 10);
    let out = read_master(master, "got:hello-pty");
    assert!(out.contains("got:hello-pty"), "{}", out);
}

#[test]
fn exec_with_tty() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("console-exec");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let (listener, sock) = console_listener(&env);
    let o = env.run_keep_io(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.to_str().unwrap(),
        &env.id,
        "sh",
        "-c",
        "tty; [ -t 1 ] && echo isatty; echo the-end; sleep 1",
    ]);
    assert_ok(&o);
    let master = receive_master(&listener);
    let out = read_master(master, "the-end");
    assert!(out.lines().next().unwrap_or("").starts_with("/dev/pts/"), "{}", out);
    assert!(out.contains("isatty\n"), "{}", out);
}

#[test]
fn terminal_without_console_socket_fails_on_create() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("console-missing");
    env.config["process"]["terminal"] = json!(true);
    env.args(&["true"]);
    let o = env.create();
    // runc: "cannot allocate tty if runc will detach without setting console socket"
    assert_fails_mentioning(&o, &["console"]);
    assert_no_leftovers(&env);
}

#[test]
fn console_socket_without_terminal_fails() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("console-unneeded");
    env.write_config();
    let (_listener, sock) = console_listener(&env);
    let b = env.bundle_path();
    let o = env.run_keep_io(&["create", "--console-socket", sock.to_str().unwrap(), "--bundle", b.to_str().unwrap(), &env.id]);
    // runc: "cannot use console socket if runc will not detach or allocate tty"
    assert_fails_mentioning(&o, &["console"]);
    assert_no_leftovers(&env);
}

/// `run` in the foreground with terminal: true and no --console-socket:
/// the runtime holds the pty itself and copies it to its own stdout.
#[test]
fn foreground_run_with_terminal_proxies_the_pty() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("tty-fg");
    env.sh("tty; test -t 0 && echo stdin-is-tty; exit 4");
    env.config["process"]["terminal"] = json!(true);
    env.write_config();
    let o = env.run_fg();
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let out = s(&o.stdout);
    assert!(out.contains("/dev/pts/"), "{}", out);
    assert!(out.contains("stdin-is-tty"), "{}", out);
    assert_no_leftovers(&env);
}

/// `exec -t` in the foreground without --console-socket proxies too.
#[test]
fn foreground_exec_with_tty_proxies_the_pty() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("tty-exec");
    env.sh("sleep 30");
    env.write_config();
    env.start_running();
    let o = env.exec(&["-t", "sh", "-c", "tty; exit 6"]);
    assert_eq!(o.status.code(), Some(6), "{}", show(&o));
    assert!(s(&o.stdout).contains("/dev/pts/"), "{}", show(&o));
}

/// `exec -t` as a user at a terminal runs it: hull's terminal goes raw for
/// the session and comes back as it was, and a resize of it (SIGWINCH)
/// reaches the container's terminal.
#[test]
fn interactive_exec_follows_resizes_and_restores_the_terminal() {
    if !require_root() {
        return;
    }
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let mut env = TestEnv::new("tty-winch");
    env.sh("sleep 30");
    env.write_config();
    env.start_running();
    let size = |rows, cols| libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO));
    // The first `stty size` runs at once: the container's pty must have
    // the user's size when it is made (busybox's stty printed a bare
    // "stty: standard input" when it ran before the proxy copied it).
    let mut cmd = env.cmd(&["exec", "-t", &env.id, "sh", "-c", "stty size; read x; stty size"]);
    let mut child = spawn_on_terminal(&mut cmd, &pty.slave);
    let first = read_master(pty.master.try_clone().unwrap(), "24 80");
    assert!(first.contains("24 80"), "{first:?}");
    // The user's terminal grows: the kernel signals hull (its foreground
    // process), which resizes the container's terminal.
    let big = size(33, 101);
    // SAFETY: TIOCSWINSZ reads the winsize on our stack.
    assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &big) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    let mut m = std::fs::File::from(pty.master.try_clone().unwrap());
    std::io::Write::write_all(&mut m, b"\n").unwrap();
    let second = read_master(pty.master.try_clone().unwrap(), "33 101");
    assert!(second.contains("33 101"), "{second:?}");
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "hull exec -t did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags, "the terminal's mode is restored");
    assert_eq!(after.input_flags, before.input_flags);
    // The exec's pty was not bound onto the container's /dev/console (its
    // mount namespace is the container's; runc's exec leaves it alone too).
    let mounts = run_cmd(&mut env.cmd(&["exec", &env.id, "cat", "/proc/self/mountinfo"]), Duration::from_secs(30));
    let text = String::from_utf8_lossy(&mounts.stdout).to_string();
    assert!(mounts.status.success() && !text.contains(" /dev/console "), "{text}");
}
