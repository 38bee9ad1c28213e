//! The per-container monitor: CRI-format logs, exit records, and a
//! container that outlives whoever started it.

mod common;

use common::*;
use hull::monitor::{exit::ExitRecord, spawn, MonitorSpec};
use std::time::Duration;

fn spec(env: &TestEnv, dir: &std::path::Path) -> MonitorSpec {
    MonitorSpec {
        state_root: env.root.path().to_path_buf(),
        id: env.id.clone(),
        bundle: env.bundle_path(),
        log_path: dir.join("c.log"),
        exit_file: dir.join("exit.json"),
        hold_created: false,
    }
}

#[test]
fn logs_in_cri_format_and_records_the_exit() {
    if !require_root() || is_runc() {
        return;
    }
    let mut env = TestEnv::new("mon-log");
    env.sh("echo out-line; echo err-line >&2; printf no-newline; exit 3");
    env.write_config();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&env, dir.path());
    let pid = spawn(&spec, &runtime()).expect("monitor");
    assert!(pid > 0);
    wait_for("exit record", Duration::from_secs(10), || spec.exit_file.exists());
    let rec = ExitRecord::load(&spec.exit_file).unwrap();
    assert_eq!(rec.exit_code, 3);
    assert_eq!(rec.reason, "Error");
    let log = read_all(&spec.log_path);
    let lines: Vec<_> = log.lines().map(|l| hull::monitor::crilog::parse_line(l).unwrap()).collect();
    assert!(lines.contains(&("stdout", false, "out-line")), "{log}");
    assert!(lines.contains(&("stderr", false, "err-line")), "{log}");
    assert!(lines.contains(&("stdout", false, "no-newline")), "{log}");
    let o = env.delete();
    assert_ok(&o);
    assert_no_leftovers(&env);
}

#[test]
fn signal_death_is_recorded_and_log_reopens() {
    if !require_root() || is_runc() {
        return;
    }
    let mut env = TestEnv::new("mon-sig");
    env.sh("echo first; trap 'echo second; exit 0' USR2; while true; do sleep 0.05; done");
    env.write_config();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(&env, dir.path());
    spawn(&spec, &runtime()).expect("monitor");
    wait_for("first line", Duration::from_secs(10), || read_all(&spec.log_path).contains("first"));
    // Rotate: move the log away, ask the monitor to reopen, then log more.
    std::fs::rename(&spec.log_path, dir.path().join("c.log.1")).unwrap();
    let monitor = find_monitor(&env.id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGUSR1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_ok(&env.kill("USR2"));
    wait_for("exit record", Duration::from_secs(10), || spec.exit_file.exists());
    assert!(read_all(&spec.log_path).contains("second"), "reopened log: {}", read_all(&spec.log_path));
    assert_eq!(ExitRecord::load(&spec.exit_file).unwrap().exit_code, 0);
    assert_ok(&env.delete());
    assert_no_leftovers(&env);
}

/// The monitor's pid, found by its command line.
fn find_monitor(id: &str) -> i32 {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("monitor") && cmd.contains(id) {
            return pid;
        }
    }
    panic!("no monitor for {id}");
}
