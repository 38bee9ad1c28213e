//! The sandbox holder (`hull sandbox-holder`, started by `hull pod` and the
//! CRI server) once it idles: hull's relocated data is unmapped, and it
//! still reaps the orphans of the PID namespace it is init of and ends on
//! SIGTERM.
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Kills the holder whatever the test's outcome.
struct Holder(i32);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The process's state letter from /proc/PID/stat; None once it is gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The pids whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let ppid = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn an_idle_holder_drops_its_relocated_data_reaps_orphans_and_ends_on_sigterm() {
    if !require_root() {
        return;
    }
    if is_runc() {
        eprintln!("skipped: the sandbox holder is hull's own");
        return;
    }
    let dir = host_tempdir("holder");
    let ready = dir.path().join("ready");
    let out = run_cmd(
        Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" sandbox-holder --ready-fd 3 --pid 3>"$1""#)
            .arg(runtime())
            .arg(&ready),
        WAIT_TIMEOUT,
    );
    assert_ok(&out);
    let answer = std::fs::read_to_string(&ready).unwrap();
    let pid: i32 = answer
        .strip_prefix("ok ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("holder said {answer:?}"));
    let _holder = Holder(pid);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_str().unwrap().trim_end_matches(" (deleted)").to_string();

    // Idle once it sleeps in rt_sigtimedwait; then no read-only mapping of
    // hull's binary holds copied-on-write pages (the relocated data did).
    wait_for("the holder to idle", WAIT_TIMEOUT, || proc_state(pid) == Some('S'));
    let (mut relocated, mut readonly) = (Vec::new(), 0);
    wait_for("the holder's relocated data to go", WAIT_TIMEOUT, || {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
        relocated.clear();
        readonly = 0;
        let mut current: Option<String> = None;
        for line in smaps.lines() {
            let mut f = line.split_whitespace();
            let first = f.next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                let perms = f.next().unwrap_or("");
                current = (perms == "r--p" && line.contains(&exe)).then(|| line.to_string());
                readonly += usize::from(current.is_some());
            } else if first == "Anonymous:" {
                if let (Some(m), Some(kib)) = (&current, f.next().and_then(|v| v.parse::<u64>().ok())) {
                    if kib > 0 {
                        relocated.push(format!("{m}: {kib} KiB"));
                    }
                }
            }
        }
        readonly > 0 && relocated.is_empty()
    });
    // hull takes pow and log2 from the libm crate: libm.so, ~0.3 MiB
    // resident in every hull process, is not loaded.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert!(!maps.contains("/libm.so") && !maps.contains("/libm-"), "the holder maps libm:\n{maps}");

    // An orphan of its PID namespace is reaped: sh starts sleep in the
    // background and exits, so sleep's parent becomes the holder.
    let out = run_cmd(
        Command::new("nsenter")
            .arg("-t")
            .arg(pid.to_string())
            .arg("-p")
            .arg("sh")
            .arg("-c")
            .arg("sleep 0.2 & exit 0"),
        WAIT_TIMEOUT,
    );
    assert_ok(&out);
    wait_for("the orphan to be reaped", Duration::from_secs(20), || children_of(pid).is_empty());
    assert_eq!(proc_state(pid), Some('S'), "the holder goes on after reaping");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    // Its parent (init or a subreaper) reaps it in its own time: a zombie is gone too.
    wait_for("the holder to end on SIGTERM", Duration::from_secs(20), || matches!(proc_state(pid), None | Some('Z')));
}
