//! `exec`: extra processes in a running container.

mod common;

use common::*;
use serde_json::json;
use std::fs;

fn running(name: &str) -> TestEnv {
    let mut env = TestEnv::new(name);
    env.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FROM_CONFIG=cfg"]);
    env.writable_tmp();
    env.sh("echo init-was-here > /tmp/init; exec sleep 1000");
    env.start_running();
    env.wait_status("running");
    env
}

#[test]
fn exec_args_and_output() {
    if !require_root() {
        return;
    }
    let env = running("exec-args");
    let o = env.exec(&["echo", "hello", "from exec"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "hello from exec\n");
    // the exec'd process sees the container's filesystem
    wait_for("init to write /tmp/init", WAIT_TIMEOUT, || s(&env.exec(&["cat", "/tmp/init"]).stdout) == "init-was-here\n");
    // and the container's environment
    let o = env.exec(&["sh", "-c", "echo $FROM_CONFIG"]);
    assert_eq!(s(&o.stdout), "cfg\n");
}

#[test]
fn exec_exit_code_passthrough() {
    if !require_root() {
        return;
    }
    let env = running("exec-exit");
    let o = env.exec(&["sh", "-c", "echo err >&2; exit 42"]);
    assert_eq!(o.status.code(), Some(42), "{}", show(&o));
    assert!(s(&o.stderr).contains("err"));
    // the container keeps running
    assert_eq!(env.status().as_deref(), Some("running"));
}

#[test]
fn exec_with_process_json() {
    if !require_root() {
        return;
    }
    let env = running("exec-process-json");
    let p = env.bundle_path().join("process.json");
    fs::write(
        &p,
        serde_json::to_vec(&json!({
            "terminal": false,
            "user": {"uid": 1001, "gid": 1001},
            "args": ["sh", "-c", "echo $FOO; pwd; id -u; id -g"],
            "env": ["PATH=/bin", "FOO=fromjson"],
            "cwd": "/etc"
        }))
        .unwrap(),
    )
    .unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "fromjson\n/etc\n1001\n1001\n");
}

#[test]
fn exec_env_and_cwd_flags() {
    if !require_root() {
        return;
    }
    let env = running("exec-env-cwd");
    let o = env.run(&[
        "exec",
        "--env",
        "FOO=bar",
        "--env",
        "BAZ=q u x",
        "--cwd",
        "/etc",
        &env.id,
        "sh",
        "-c",
        "echo $FOO; echo $BAZ; echo $FROM_CONFIG; pwd",
    ]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "bar\nq u x\ncfg\n/etc\n");
}

#[test]
fn exec_user_flag() {
    if !require_root() {
        return;
    }
    let env = running("exec-user");
    let o = env.run(&["exec", "--user", "1000:1000", "--additional-gids", "10", &env.id, "sh", "-c", "id -u; id -g; id -G"]);
    assert_ok(&o);
    let out = s(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1000", "1000"], "{}", out);
    let mut g: Vec<&str> = lines[2].split_whitespace().collect();
    g.sort();
    assert_eq!(g, vec!["10", "1000"], "{}", out);
}

#[test]
fn exec_detach_with_pid_file() {
    if !require_root() {
        return;
    }
    let env = running("exec-detach");
    let pidfile = env.bundle_path().join("exec.pid");
    let o = env.run_keep_io(&["exec", "--detach", "--pid-file", pidfile.to_str().unwrap(), &env.id, "sleep", "997"]);
    assert_ok(&o);
    let pid: i32 = fs::read_to_string(&pidfile)
        .expect("pid file written")
        .trim()
        .parse()
        .expect("pid file holds a number");
    // runc may return (and write the pid file) just before the process has
    // exec'd the program: poll
    wait_for("exec'd process to run sleep 997", WAIT_TIMEOUT, || {
        s(&fs::read(format!("/proc/{}/cmdline", pid)).unwrap_or_default()) == "sleep\0997\0"
    });
    // same namespaces and cgroup as the container's init
    let init = env.pid().to_string();
    for ns in ["pid", "net", "ipc", "uts", "mnt"] {
        assert_eq!(ns_link(&pid.to_string(), ns), ns_link(&init, ns), "{} namespace", ns);
    }
    assert_eq!(fs::read_to_string(format!("/proc/{}/cgroup", pid)).unwrap(), fs::read_to_string(format!("/proc/{}/cgroup", init)).unwrap());
    // and ps lists it
    let o = env.run(&["ps", "--format", "json", &env.id]);
    let pids: Vec<i64> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(pids.contains(&(pid as i64)), "{:?}", pids);
}

#[test]
fn exec_process_is_in_container_namespaces() {
    if !require_root() {
        return;
    }
    let env = running("exec-ns");
    let init = env.pid().to_string();
    let o = env.exec(&["sh", "-c", "for n in pid net ipc uts mnt; do readlink /proc/self/ns/$n; done; hostname"]);
    assert_ok(&o);
    let want: String = ["pid", "net", "ipc", "uts", "mnt"].iter().map(|n| ns_link(&init, n) + "\n").collect::<String>()
        + env.config["hostname"].as_str().unwrap()
        + "\n";
    assert_eq!(s(&o.stdout), want);
    // init is pid 1 in the container, the exec'd shell is not
    let o = env.exec(&["sh", "-c", "echo $$; cat /proc/1/cmdline | tr '\\0' ' '"]);
    let out = s(&o.stdout);
    let mut l = out.lines();
    assert_ne!(l.next(), Some("1"));
    assert_eq!(l.next(), Some("sleep 1000 "));
}

#[test]
fn exec_gets_container_capabilities_and_cap_flag() {
    if !require_root() {
        return;
    }
    let env = running("exec-caps");
    let o = env.exec(&["grep", "CapEff", "/proc/self/status"]);
    assert_ok(&o);
    // AUDIT_WRITE, KILL, NET_BIND_SERVICE
    assert_eq!(s(&o.stdout).split_whitespace().nth(1), Some("0000000020000420"));
    let o = env.run(&["exec", "--cap", "CAP_SYS_ADMIN", &env.id, "grep", "CapEff", "/proc/self/status"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout).split_whitespace().nth(1), Some("0000000020200420"));
}

#[test]
fn exec_no_new_privs_from_config() {
    if !require_root() {
        return;
    }
    let env = running("exec-nnp");
    let o = env.exec(&["grep", "NoNewPrivs", "/proc/self/status"]);
    assert_eq!(s(&o.stdout).split_whitespace().nth(1), Some("1"));
}

#[test]
fn exec_missing_binary_fails() {
    if !require_root() {
        return;
    }
    let env = running("exec-nobin");
    let o = env.exec(&["/bin/hull-nope"]);
    assert_fails_mentioning(&o, &["/bin/hull-nope"]);
    assert_eq!(env.status().as_deref(), Some("running"));
}

#[test]
fn exec_in_stopped_container_fails() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("exec-stopped");
    env.args(&["true"]);
    env.start_running();
    env.wait_status("stopped");
    let o = env.exec(&["true"]);
    assert_fails_mentioning(&o, &["stopped", "not running"]);
}

#[test]
fn exec_does_not_leak_fds() {
    if !require_root() {
        return;
    }
    let env = running("exec-fds");
    let o = env.exec(&["ls", "/proc/self/fd"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "0\n1\n2\n3\n");
}
