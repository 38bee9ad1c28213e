//! Defences against known runtime escapes, checked from inside containers.

mod common;

use common::*;
use serde_json::json;

/// CVE-2019-5736: the processes hull puts into a container run from a
/// protected copy of hull, never from the host binary. A startContainer
/// hook (a child of the container's init, in its namespaces, before the
/// program is exec'd) reads what its parent's /proc/PID/exe points at.
#[test]
fn container_init_does_not_run_the_host_binary() {
    if !require_root() || is_runc() {
        // runc 1.1 also uses a memfd, but names it differently.
        return;
    }
    let out = host_tempdir("hull-exe");
    let mut env = TestEnv::new("exe-guard");
    env.bind(out.path(), "/out");
    env.sh("true");
    env.config["hooks"] = json!({
        "startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "readlink /proc/$PPID/exe > /out/exe; cat /proc/$PPID/status | grep -i '^name' >> /out/exe"]
        }]
    });
    env.write_config();
    let o = env.run_fg();
    assert_ok(&o);
    let seen = read_all(&out.path().join("exe"));
    // hull runs from a detached read-only bind of itself (whose path reads
    // as "/") or, on older kernels, from a sealed memfd.
    let link = seen.lines().next().unwrap_or("");
    assert!(link == "/" || link.contains("memfd:"), "init's exe should be a protected copy, saw: {seen}");
    assert!(!seen.contains(runtime().to_str().unwrap()), "init runs the host binary: {seen}");
    assert_no_leftovers(&env);
}

/// What the container can reach of hull cannot be written: a process in
/// the container (here a hook, child of the init) that tries to write
/// through the init's /proc/PID/exe is refused, and the host binary is
/// unchanged.
#[test]
fn the_binary_cannot_be_overwritten_from_the_container() {
    if !require_root() || is_runc() {
        return;
    }
    let before = std::fs::read(runtime()).unwrap();
    let out = host_tempdir("hull-exe-w");
    let mut env = TestEnv::new("exe-write");
    env.bind(out.path(), "/out");
    env.sh("true");
    env.config["hooks"] = json!({
        "startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", "if printf x >> /proc/$PPID/exe; then echo WROTE; else echo REFUSED; fi > /out/result 2>&1"]
        }]
    });
    env.write_config();
    let o = env.run_fg();
    assert_ok(&o);
    let result = read_all(&out.path().join("result"));
    assert!(result.contains("REFUSED"), "write through /proc/PID/exe: {result}");
    assert_eq!(std::fs::read(runtime()).unwrap(), before, "host binary changed");
    assert_no_leftovers(&env);
}

/// CVE-2019-5736 as its exploit did it: the container's program is a
/// script `#!/proc/self/exe`, so the kernel runs the exec'ing process's own
/// executable as the interpreter. A plain container's init (new PID
/// namespace, no hooks in the container) execs through hull's sealed
/// trampoline instead of re-executing hull protected: what the script
/// reaches is the trampoline, which refuses to run without a program
/// (status 127), not hull, and the host binary is unchanged.
#[test]
fn a_script_interpreted_by_proc_self_exe_reaches_the_trampoline() {
    if !require_root() || is_runc() {
        return;
    }
    let before = std::fs::read(runtime()).unwrap();
    let dir = host_tempdir("hull-exe-sh");
    let script = dir.path().join("evil");
    std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut env = TestEnv::new("exe-shebang");
    env.bind(dir.path(), "/evil-dir");
    env.args(&["/evil-dir/evil"]);
    let o = env.run_fg();
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    assert!(s(&o.stderr).contains("container init: exec of the program failed"), "{}", show(&o));
    assert_eq!(std::fs::read(runtime()).unwrap(), before, "host binary changed");
    assert_no_leftovers(&env);
}

/// CVE-2024-21626: no host fd is open in the container's process, and the
/// cwd is inside the container's root.
#[test]
fn no_host_fds_and_cwd_inside_root() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("fd-leak");
    env.sh("for f in /proc/self/fd/*; do echo \"$f $(readlink $f)\"; done; pwd; readlink /proc/self/cwd");
    let out = env.output_ok();
    for line in out.lines().filter(|l| l.starts_with("/proc/self/fd/")) {
        let fd: i32 = line["/proc/self/fd/".len()..].split(' ').next().unwrap().parse().unwrap();
        // 0-2 are stdio; the one more is the glob's own directory fd.
        assert!(fd <= 3, "unexpected fd in container: {line}\n{out}");
        assert!(!line.contains("cgroup") && !line.contains("hull"), "host fd leaked: {line}");
    }
    assert!(out.lines().any(|l| l == "/"), "{out}");
}

/// Errors go to --log in runc's JSON shape, which containerd reads.
#[test]
fn errors_are_logged_as_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("log-json");
    let log = env.root.path().join("log.json");
    let o = env.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", "no-such-container-x"]);
    assert_fails(&o);
    let text = read_all(&log);
    let line = text.lines().last().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{line}");
    assert!(v["time"].is_string());
}
