//! `hull pod exec -i/-t` and `hull pod port-forward`, driven only through
//! the command line: an interactive terminal that follows resizes, stdin
//! passed or not, and local ports forwarded into the pod's network
//! namespace (traffic only to the pod's own loopback).
mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::pty::*;
use common::*;

/// A pod of one container under its own hull root; removed on drop.
struct Pod {
    root: tempfile::TempDir,
    name: String,
}

impl Pod {
    /// Run a pod whose one container (`app`) runs `script`, without CNI
    /// (loopback only), and wait until exec in it works.
    fn run(name: &str, script: &str) -> Pod {
        Pod::run_with(name, script, "")
    }

    /// As [`Pod::run`], with `extra` lines added to the container (e.g.
    /// `    stdin: true\n`).
    fn run_with(name: &str, script: &str, extra: &str) -> Pod {
        let root = tempfile::Builder::new().prefix("hull-podst-").tempdir_in("/tmp").unwrap();
        let p = Pod { root, name: unique_id(name).replace('_', "-").to_lowercase() };
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {}\n    command: [sh, -c, '{script}']\n{extra}",
            p.name,
            rootfs().display()
        );
        let (file, no_cni) = (p.root.path().join("pod.yaml"), p.root.path().join("no-cni"));
        std::fs::write(&file, manifest).unwrap();
        std::fs::create_dir_all(&no_cni).unwrap();
        assert_ok(&p.hull(&["pod", "run", "--cni-conf-dir", no_cni.to_str().unwrap(), file.to_str().unwrap()]));
        wait_for("exec in the pod", Duration::from_secs(20), || p.hull(&["pod", "exec", &p.name, "--", "true"]).status.success());
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root")
            .arg(self.root.path())
            .env("HULL_STATE_DIR", self.root.path().join("state"))
            .args(args);
        cmd
    }

    fn hull(&self, args: &[&str]) -> Output {
        run_cmd(&mut self.cmd(args), Duration::from_secs(60))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.hull(&["pod", "rm", &self.name]);
    }
}

#[test]
fn pod_exec_interactive_terminal_follows_resizes() {
    if !require_root() {
        return;
    }
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let pod = Pod::run("pod-exec-it", "exec sleep 300");
    let size = |rows, cols| libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON | LocalFlags::ECHO));
    let mut cmd =
        pod.cmd(&["pod", "exec", "-it", &pod.name, "--", "sh", "-c", "tty; stty size; while read x; do echo got-$x; stty size; done"]);
    let mut child = spawn_on_terminal(&mut cmd, &pty.slave);
    let first = read_master(pty.master.try_clone().unwrap(), "24 80");
    assert!(first.contains("/dev/pts/") && first.contains("24 80"), "{first:?}");
    // Our terminal grows: hull (its foreground process) gets SIGWINCH and
    // resizes the container's terminal. Each line of input makes the shell
    // print the size again: a few tries, as a loaded machine may take a
    // while to deliver the signal.
    // SAFETY: TIOCSWINSZ reads the winsize on our stack.
    assert_eq!(unsafe { libc::ioctl(pty.master.as_raw_fd(), libc::TIOCSWINSZ, &size(33, 101)) }, 0);
    let mut m = std::fs::File::from(pty.master.try_clone().unwrap());
    let mut second = String::new();
    for _ in 0..3 {
        m.write_all(b"hi\n").unwrap();
        second = read_master(pty.master.try_clone().unwrap(), "33 101");
        if second.contains("33 101") {
            break;
        }
    }
    assert!(second.contains("got-hi") && second.contains("33 101"), "{second:?}");
    // End of input (^D at the start of a line) ends the loop and the shell.
    m.write_all(b"\x04").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "hull pod exec -it did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags, "the terminal's mode is restored");
}

#[test]
fn pod_exec_stdin_only_with_i() {
    if !require_root() {
        return;
    }
    let pod = Pod::run("pod-exec-i", "exec sleep 300");
    let with_input = |args: &[&str]| {
        let mut c = pod.cmd(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "hull pod exec did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let o = with_input(&["pod", "exec", "-i", &pod.name, "--", "cat"]);
    assert_eq!((o.status.code(), s(&o.stdout).as_str()), (Some(0), "piped\n"), "{}", show(&o));
    // Without -i the command reads /dev/null: cat ends at once, empty.
    let o = with_input(&["pod", "exec", &pod.name, "--", "cat"]);
    assert_eq!((o.status.code(), s(&o.stdout).as_str()), (Some(0), ""), "{}", show(&o));
}

#[test]
fn pod_port_forward_to_the_pods_loopback() {
    if !require_root() {
        return;
    }
    // An echo server on the pod's loopback, one process per connection.
    let pod = Pod::run("pod-pf", "exec nc -ll -p 8080 -e cat");
    // Bad port specs are refused before anything listens.
    let o = pod.hull(&["pod", "port-forward", &pod.name, "80:0"]);
    assert_fails_mentioning(&o, &["80:0"]);
    assert_fails_mentioning(&pod.hull(&["pod", "port-forward", "no-such-pod", "8080"]), &["no-such-pod"]);
    let mut c = pod.cmd(&["pod", "port-forward", &pod.name, ":8080"]);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let _guard = Kill(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let addr = line.split_whitespace().nth(2).unwrap_or_else(|| panic!("{line:?}")).to_string();
    assert!(addr.starts_with("127.0.0.1:") && line.trim_end().ends_with("-> 8080"), "{line:?}");
    // The listener is on the host's loopback; the echo server is only on
    // the pod's: two connections at once, each echoed on its own.
    let mut conns: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for (i, c) in conns.iter_mut().enumerate().rev() {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(format!("ping-{i}\n").as_bytes()).unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let want = format!("ping-{i}\n");
        let mut got = vec![0u8; want.len()];
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, want.as_bytes());
        // Our end of data ends the forwarded connection (cat sees EOF).
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
    }
}

/// Wait (bounded) for a child to end; its exit code.
fn wait_child(child: &mut std::process::Child, what: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn pod_attach_passes_stdin_once_and_output() {
    if !require_root() {
        return;
    }
    // The container's stdin is held by its monitor; stdinOnce: our end of
    // input is the container's.
    let pod = Pod::run_with("pod-attach", "cat; echo done-$?", "    stdin: true\n    stdinOnce: true\n");
    let mut c = pod.cmd(&["pod", "attach", &pod.name]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"hello-attach\n").unwrap();
    let code = wait_child(&mut child, "hull pod attach");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("hello-attach") && out.contains("done-0"), "{out:?} {err}");
    // A pod that does not exist is refused.
    let missing = pod.hull(&["pod", "attach", "no-such-pod"]);
    assert!(!missing.status.success());
}

#[test]
fn pod_attach_with_a_tty_gives_our_size_and_input() {
    if !require_root() {
        return;
    }
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let pod = Pod::run_with("pod-attach-t", "read l; stty size; echo got-$l", "    stdin: true\n    tty: true\n");
    let size = libc::winsize { ws_row: 33, ws_col: 77, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before.local_flags.contains(LocalFlags::ICANON));
    let mut child = spawn_on_terminal(&mut pod.cmd(&["pod", "attach", &pod.name]), &pty.slave);
    // The container reads a line: ours, typed once attach is connected (a
    // few tries, since the first keystrokes may come before it is).
    let mut m = std::fs::File::from(pty.master.try_clone().unwrap());
    let mut out = String::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        m.write_all(b"xy\r").unwrap();
        out = read_master(pty.master.try_clone().unwrap(), "got-");
        if out.contains("got-") {
            break;
        }
    }
    assert!(out.contains("33 77") && out.contains("got-xy"), "{out:?}");
    assert_eq!(wait_child(&mut child, "hull pod attach -t"), Some(0));
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags, "the terminal's mode is restored");
}
