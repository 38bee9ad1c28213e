//! Container lifecycle through the CLI: create / start / state / run / kill /
//! delete / list / ps, and the error cases of each.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A program that keeps running until SIGTERM (pid 1 of a pid namespace only
/// receives signals it has a handler for, so it traps TERM).
const WAIT_FOR_TERM: &str = "trap 'exit 0' TERM; sleep 1000 & wait";

/// Wait until the WAIT_FOR_TERM script has set its trap: its `sleep`
/// child (started after the trap) shows up in `ps`.
fn wait_trap_set(env: &TestEnv) {
    wait_for("the shell's trap", WAIT_TIMEOUT, || {
        let o = env.run(&["ps", "--format", "json", &env.id]);
        serde_json::from_slice::<Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len() >= 2))
            .unwrap_or(false)
    });
}

#[test]
fn create_does_not_run_program_until_start() {
    if !require_root() {
        return;
    }
    let host = host_tempdir("hull-lc-");
    let marker = host.path().join("started");
    let mut env = TestEnv::new("create-start");
    env.bind(host.path(), "/tmp").sh("touch /tmp/started; exec sleep 1000");
    env.create_ok();

    let st = env.state_json();
    assert_eq!(st["status"], "created", "state after create: {}", st);
    let pid = st["pid"].as_i64().expect("pid in state after create");
    assert!(pid > 0);
    assert!(std::path::Path::new(&format!("/proc/{}", pid)).exists(), "the container's init process {} should exist after create", pid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "program ran before start");

    env.start_ok();
    wait_file(&marker, WAIT_TIMEOUT);
    env.wait_status("running");
    assert_eq!(env.pid() as i64, pid, "pid changes between create and start");
}

#[test]
fn state_json_fields() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("state-fields");
    env.config["annotations"] = json!({"org.hull.test": "yes", "other": "x y"});
    env.args(&["sleep", "1000"]);
    env.create_ok();
    let st = env.state_json();
    assert!(st["ociVersion"].as_str().map(|v| !v.is_empty()).unwrap_or(false), "ociVersion: {}", st);
    assert_eq!(st["id"], json!(env.id));
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap_or(0) > 0, "pid: {}", st);
    assert_eq!(st["bundle"], json!(env.bundle_path().to_str().unwrap()));
    assert_eq!(st["annotations"]["org.hull.test"], "yes", "annotations: {}", st);
    assert_eq!(st["annotations"]["other"], "x y", "annotations: {}", st);

    env.start_ok();
    let st = env.state_json();
    assert_eq!(st["status"], "running");
    env.kill("KILL");
    env.wait_status("stopped");
    let st = env.state_json();
    assert_eq!(st["status"], "stopped");
}

#[test]
fn run_passes_exit_status_through() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("exit-status");
    env.sh("echo out; echo err >&2; exit 3");
    let o = env.run_fg();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(s(&o.stdout), "out\n");
    assert!(s(&o.stderr).contains("err"), "{}", show(&o));
}

#[test]
fn run_exit_zero_and_output() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("exit-zero");
    env.args(&["echo", "hello", "world"]);
    let o = env.run_fg();
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "hello world\n");
    // after `run` returns the container is gone
    assert!(!env.state().status.success(), "state should fail after run exits");
    assert_no_leftovers(&env);
}

#[test]
fn run_killed_by_signal_is_128_plus_n() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("exit-signal");
    env.args(&["sleep", "1000"]);
    env.write_config();
    let b = env.bundle_path();
    let mut child = env
        .cmd(&["run", "--bundle", b.to_str().unwrap(), &env.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_status("running");
    assert_ok(&env.kill("KILL"));
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run did not return after the container was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(128 + 9), "run's exit status: {:?}", st);
}

#[test]
fn run_detach_returns_while_container_runs() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("run-detach");
    env.sh("echo detached-hello; exec sleep 1000");
    let t = Instant::now();
    let o = env.run_detached();
    assert_ok(&o);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(env.status().as_deref(), Some("running"));
    wait_for("container output", WAIT_TIMEOUT, || env.container_stdout().contains("detached-hello"));
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

fn kill_with(sig: &str) {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new(&format!("kill-{}", sig));
    env.sh(WAIT_FOR_TERM);
    env.start_running();
    env.wait_status("running");
    wait_trap_set(&env);
    let o = env.kill(sig);
    assert_ok(&o);
    env.wait_status("stopped");
    assert_ok(&env.delete());
    assert_no_leftovers(&env);
}

#[test]
fn kill_by_name_term() {
    kill_with("TERM");
}

#[test]
fn kill_by_name_sigterm() {
    kill_with("SIGTERM");
}

#[test]
fn kill_by_number() {
    kill_with("15");
}

#[test]
fn kill_default_signal_is_term() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("kill-default");
    env.sh(WAIT_FOR_TERM);
    env.start_running();
    wait_trap_set(&env);
    assert_ok(&env.run(&["kill", &env.id]));
    env.wait_status("stopped");
}

#[test]
fn kill_all_kills_every_process() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("kill-all");
    env.sh("sleep 1000 & sleep 1000 & sleep 1000 & wait");
    env.start_running();
    let id = env.id.clone();
    // wait for the 3 children to exist
    wait_for("3 sleeps in the container", WAIT_TIMEOUT, || {
        let o = env.run(&["ps", "--format", "json", &id]);
        serde_json::from_slice::<Value>(&o.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.len()))
            .unwrap_or(0)
            >= 4
    });
    let o = env.run(&["kill", "--all", &id, "KILL"]);
    assert_ok(&o);
    env.wait_status("stopped");
    assert_ok(&env.delete());
    assert_no_leftovers(&env);
}

#[test]
fn kill_unknown_signal_fails() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("kill-badsig");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let o = env.kill("SIGNOTREAL");
    assert_fails_mentioning(&o, &["signal"]);
    assert_eq!(env.status().as_deref(), Some("running"));
}

#[test]
fn delete_stopped_container_removes_everything() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("delete");
    env.args(&["true"]);
    env.start_running();
    env.wait_status("stopped");
    let o = env.delete();
    assert_ok(&o);
    let o = env.state();
    assert_fails(&o);
    assert_no_leftovers(&env);
}

#[test]
fn delete_created_container_needs_force() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("delete-created");
    env.args(&["sleep", "1000"]);
    env.create_ok();
    let pid = env.pid();
    // runtime-spec: deleting a container that is not stopped MUST fail and
    // have no effect (runc 1.1 and crun 1.8 delete it anyway).
    if !is_runc() {
        let o = env.delete();
        assert_fails_mentioning(&o, &["not stopped"]);
        assert_eq!(env.status().as_deref(), Some("created"));
        assert_eq!(env.pid(), pid);
        // still startable: untouched
        env.start_ok();
        assert_eq!(env.status().as_deref(), Some("running"));
    }
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn delete_force_kills_running_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("delete-force");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let pid = env.pid();
    let o = env.run(&["delete", "--force", &env.id]);
    assert_ok(&o);
    wait_for("init process to disappear", WAIT_TIMEOUT, || {
        // a zombie that is not ours would still show: check its state
        let st = std::fs::read_to_string(format!("/proc/{}/stat", pid)).unwrap_or_default();
        st.is_empty() || st.contains(") Z")
    });
    assert_no_leftovers(&env);
}

#[test]
fn delete_running_without_force_fails() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("delete-running");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let o = env.delete();
    assert_fails_mentioning(&o, &["running", "not stopped"]);
    assert_eq!(env.status().as_deref(), Some("running"));
}

#[test]
fn list_shows_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("list");
    env.args(&["sleep", "1000"]);
    env.create_ok();

    let o = env.run(&["list", "--format", "json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).expect("list json");
    let arr = v.as_array().expect("list --format json prints an array");
    assert_eq!(arr.len(), 1, "{}", v);
    assert_eq!(arr[0]["id"], json!(env.id));
    assert_eq!(arr[0]["status"], "created");
    assert_eq!(arr[0]["bundle"], json!(env.bundle_path().to_str().unwrap()));
    assert!(arr[0]["pid"].as_i64().unwrap_or(0) > 0);
    assert!(arr[0]["created"].is_string());

    let o = env.run(&["list", "-q"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), format!("{}\n", env.id));

    let o = env.run(&["list"]);
    assert_ok(&o);
    let text = s(&o.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] {
        assert!(header.contains(col), "header {:?} lacks {}", header, col);
    }
    let row = lines.next().unwrap_or("");
    assert!(row.starts_with(&env.id) && row.contains("created"), "row: {:?}", row);
}

#[test]
fn list_empty_root() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("list-empty");
    let o = env.run(&["list", "--format", "json"]);
    assert_ok(&o);
    // runc prints `null` for no containers
    let v: Value = serde_json::from_slice(&o.stdout).expect("list json");
    assert!(v.is_null() || v.as_array().map(|a| a.is_empty()).unwrap_or(false), "{}", v);
    let o = env.run(&["list", "-q"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "");
}

#[test]
fn ps_lists_container_processes() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ps");
    env.sh("sleep 1001 & sleep 1002 & wait");
    env.start_running();
    let init = env.pid();
    let id = env.id.clone();
    let mut pids = Vec::new();
    wait_for("3 processes in ps", WAIT_TIMEOUT, || {
        let o = env.run(&["ps", "--format", "json", &id]);
        pids = serde_json::from_slice::<Vec<i64>>(&o.stdout).unwrap_or_default();
        pids.len() == 3
    });
    assert!(pids.contains(&(init as i64)), "ps json {:?} lacks init pid {}", pids, init);
    for p in &pids {
        let cmd = read_all(std::path::Path::new(&format!("/proc/{}/cmdline", p)));
        assert!(cmd.starts_with("sh") || cmd.starts_with("sleep"), "unexpected process {} {:?}", p, cmd);
    }
    // table format runs ps(1) on the host and keeps the container's rows
    let o = env.run(&["ps", &id]);
    assert_ok(&o);
    let text = s(&o.stdout);
    assert!(text.lines().next().unwrap_or("").contains("PID"), "{}", text);
    assert!(text.contains("sleep 1001") && text.contains("sleep 1002"), "{}", text);
}

#[test]
fn error_duplicate_id() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("dup");
    env.args(&["sleep", "1000"]);
    env.create_ok();
    let o = env.create();
    assert_fails_mentioning(&o, &["exists"]);
    // the first container is untouched
    assert_eq!(env.status().as_deref(), Some("created"));
}

#[test]
fn error_unknown_id() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("unknown");
    for cmd in [
        vec!["state", "no-such-ctr"],
        vec!["start", "no-such-ctr"],
        vec!["kill", "no-such-ctr", "KILL"],
        vec!["delete", "no-such-ctr"],
        vec!["ps", "no-such-ctr"],
        vec!["exec", "no-such-ctr", "true"],
    ] {
        let o = env.run(&cmd);
        assert_fails_mentioning(&o, &["does not exist", "not exist", "not found"]);
    }
}

#[test]
fn error_start_running_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("start-twice");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let o = env.start();
    assert_fails_mentioning(&o, &["running"]);
    assert_eq!(env.status().as_deref(), Some("running"));
}

#[test]
fn error_start_stopped_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("start-stopped");
    env.args(&["true"]);
    env.start_running();
    env.wait_status("stopped");
    let o = env.start();
    assert_fails_mentioning(&o, &["stopped"]);
}

#[test]
fn error_kill_stopped_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("kill-stopped");
    env.args(&["true"]);
    env.start_running();
    env.wait_status("stopped");
    let o = env.kill("KILL");
    assert_fails_mentioning(&o, &["not running", "stopped"]);
}

#[test]
fn missing_id_argument_is_usage_error() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("noarg");
    for cmd in ["state", "start", "delete", "kill", "create"] {
        let o = env.run(&[cmd]);
        assert_fails(&o);
    }
}

#[test]
fn unique_ids_do_not_interfere() {
    if !require_root() {
        return;
    }
    // two containers in the same --root
    let mut a = TestEnv::new("pair-a");
    a.args(&["sleep", "1000"]);
    a.create_ok();
    let mut b_cmd = Command::new(runtime());
    let b_id = format!("{}-b", a.id);
    b_cmd
        .arg("--root")
        .arg(a.root.path())
        .args(["create", "--bundle", a.bundle_path().to_str().unwrap(), &b_id]);
    let o = run_cmd(&mut b_cmd, CMD_TIMEOUT);
    assert_ok(&o);
    let o = a.run(&["list", "-q"]);
    let del = a.run(&["delete", "--force", &b_id]);
    let mut ids: Vec<String> = s(&o.stdout).lines().map(String::from).collect();
    ids.sort();
    let mut want = vec![a.id.clone(), b_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_ok(&del);
    assert_eq!(a.status().as_deref(), Some("created"));
}
