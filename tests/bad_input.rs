//! Invalid bundles and arguments: each must fail with a message naming the
//! problem and leave nothing behind.  Also `spec` and `features`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;

/// Create must fail, stderr must mention one of `needles`, and nothing of
/// the container may remain.
#[track_caller]
fn create_fails(env: &TestEnv, needles: &[&str]) {
    let o = env.create();
    assert_fails_mentioning(&o, needles);
    assert!(!env.state().status.success(), "state succeeds after failed create");
    assert_no_leftovers(env);
}

#[test]
fn malformed_config_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("malformed");
    let b = env.bundle_path();
    fs::write(b.join("config.json"), r#"{"ociVersion": "1.0.2", "process": "#).unwrap();
    let o = env.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), &env.id]);
    // runc: "unexpected EOF"
    assert_fails_mentioning(&o, &["eof", "json", "parse", "config"]);
    assert_no_leftovers(&env);
}

#[test]
fn config_wrong_field_type() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("wrong-type");
    let b = env.bundle_path();
    let mut c = env.config.clone();
    c["process"]["args"] = json!("not-a-list");
    fs::write(b.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
    let o = env.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), &env.id]);
    // runc: "json: cannot unmarshal string into Go struct field Process.process.args of type []string"
    assert_fails_mentioning(&o, &["args"]);
    assert_no_leftovers(&env);
}

#[test]
fn missing_config_json() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("no-config");
    let b = env.bundle_path();
    fs::remove_file(b.join("config.json")).ok();
    let o = env.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), &env.id]);
    // runc: "JSON specification file config.json not found"
    assert_fails_mentioning(&o, &["config.json"]);
    assert_no_leftovers(&env);
}

#[test]
fn unknown_namespace_type() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("bad-ns");
    env.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "bogus"}));
    // runc: namespace {"bogus" ""} does not exist
    create_fails(&env, &["bogus"]);
}

#[test]
fn duplicate_namespace() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("dup-ns");
    env.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "pid"}));
    // runc: malformed spec file: duplicated ns {"pid" ""}
    create_fails(&env, &["duplicate"]);
}

#[test]
fn namespace_path_missing() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ns-path-missing");
    env.set_namespace("network", Some("/nonexistent/hull-netns"));
    create_fails(&env, &["/nonexistent/hull-netns"]);
}

#[test]
fn mount_source_missing() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("bad-mount-src");
    env.add_mount(json!({
        "destination": "/tmp", "type": "bind", "source": "/nonexistent/hull-src",
        "options": ["rbind"]
    }));
    create_fails(&env, &["/nonexistent/hull-src"]);
}

#[test]
fn mount_unknown_fs_type() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("bad-fstype");
    env.add_mount(json!({"destination": "/tmp", "type": "nosuchfs", "source": "none"}));
    // runc: error mounting "none" to rootfs at "/tmp": ... no such device
    create_fails(&env, &["/tmp"]);
}

#[test]
fn rootfs_missing() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-rootfs");
    env.config["root"]["path"] = json!("/nonexistent/hull-rootfs");
    // runc: invalid rootfs: stat /nonexistent/rootfs: no such file or directory
    create_fails(&env, &["/nonexistent/hull-rootfs"]);
}

#[test]
fn executable_missing_fails_at_create() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-exe");
    env.args(&["/bin/hull-does-not-exist"]);
    // runc checks the executable in the container before create returns:
    // exec: "/bin/does-not-exist": stat /bin/does-not-exist: no such file or directory
    create_fails(&env, &["/bin/hull-does-not-exist"]);
}

#[test]
fn executable_not_in_path_fails() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("not-in-path");
    env.args(&["hull-no-such-command"]);
    let o = env.run_fg();
    assert_fails_mentioning(&o, &["hull-no-such-command"]);
    assert_no_leftovers(&env);
}

#[test]
fn empty_args() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("empty-args");
    env.config["process"]["args"] = json!([]);
    // runc: args must not be empty
    create_fails(&env, &["args"]);
}

#[test]
fn no_process() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-process");
    env.config.as_object_mut().unwrap().remove("process");
    // runc: process property must not be empty
    create_fails(&env, &["process"]);
}

#[test]
fn relative_cwd() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("rel-cwd");
    env.config["process"]["cwd"] = json!("relative/dir");
    // runc: Cwd must be an absolute path
    create_fails(&env, &["cwd"]);
}

#[test]
fn unknown_rlimit() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("bad-rlimit");
    env.config["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    // runc: wrong rlimit value: RLIMIT_BOGUS
    create_fails(&env, &["RLIMIT_BOGUS"]);
}

#[test]
fn invalid_container_id() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("bad-id");
    env.write_config();
    let b = env.bundle_path();
    for bad in ["a/b", "..", "with space"] {
        let o = env.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), bad]);
        // runc: invalid container ID format
        assert_fails_mentioning(&o, &["id"]);
    }
    assert!(fs::read_dir(env.root.path()).map(|d| d.count()).unwrap_or(0) == 0, "state root not empty");
}

#[test]
fn unknown_capability_is_ignored_with_warning() {
    if !require_root() {
        return;
    }
    // runc only warns: "ignoring unknown or unavailable capabilities: [CAP_BOGUS]"
    let mut env = TestEnv::new("bad-cap");
    env.config["process"]["capabilities"]["bounding"].as_array_mut().unwrap().push(json!("CAP_BOGUS"));
    env.args(&["true"]);
    let o = env.run_fg();
    assert_ok(&o);
    assert!(s(&o.stderr).contains("CAP_BOGUS"), "{}", show(&o));
}

#[test]
fn failed_create_can_be_retried_with_same_id() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("retry");
    env.config["root"]["path"] = json!("/nonexistent/hull-rootfs");
    let o = env.create();
    assert_fails(&o);
    env.config["root"]["path"] = json!(rootfs().to_str().unwrap());
    env.args(&["sleep", "1000"]);
    env.create_ok();
    assert_eq!(env.status().as_deref(), Some("created"));
}

#[test]
fn spec_writes_default_config() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = run_cmd(std::process::Command::new(runtime()).arg("spec").current_dir(dir.path()), CMD_TIMEOUT);
    assert_ok(&o);
    let c: Value = serde_json::from_slice(&fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert!(c["ociVersion"].is_string());
    assert_eq!(c["process"]["terminal"], true);
    assert_eq!(c["process"]["args"], json!(["sh"]));
    assert_eq!(c["process"]["cwd"], "/");
    assert_eq!(c["root"], json!({"path": "rootfs", "readonly": true}));
    // Each runtime names the default hostname after itself.
    assert_eq!(c["hostname"], if is_runc() { "runc" } else { "hull" });
    let ns: Vec<&str> = c["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
    // runc 1.1 leaves out the cgroup namespace that runc 1.2 and hull add.
    for want in ["pid", "network", "ipc", "uts", "mount"] {
        assert!(ns.contains(&want), "{want} missing from {ns:?}");
    }
    let dests: Vec<&str> = c["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
    assert_eq!(dests, vec!["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]);
    assert!(c["linux"]["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
    assert!(c["linux"]["readonlyPaths"].as_array().unwrap().contains(&json!("/proc/sys")));
    assert_eq!(c["process"]["noNewPrivileges"], true);

    // a second `spec` refuses to overwrite: "File config.json exists. Remove it first"
    let o = run_cmd(std::process::Command::new(runtime()).arg("spec").current_dir(dir.path()), CMD_TIMEOUT);
    assert_fails_mentioning(&o, &["config.json"]);

    // --bundle writes into another directory
    let other = tempfile::tempdir().unwrap();
    let o = run_cmd(std::process::Command::new(runtime()).args(["spec", "--bundle", other.path().to_str().unwrap()]), CMD_TIMEOUT);
    assert_ok(&o);
    assert!(other.path().join("config.json").exists());
}

#[test]
fn features_json() {
    if !require_root() {
        return;
    }
    let o = run_cmd(std::process::Command::new(runtime()).arg("features"), CMD_TIMEOUT);
    assert_ok(&o);
    let f: Value = serde_json::from_slice(&o.stdout).expect("features prints JSON");
    assert!(f["ociVersionMin"].as_str().unwrap_or("").starts_with("1.0"), "{}", f);
    assert!(f["ociVersionMax"].as_str().unwrap_or("").starts_with("1."), "{}", f);
    let hooks: Vec<&str> = f["hooks"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for h in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(hooks.contains(&h), "hooks {:?} lacks {}", hooks, h);
    }
    let opts: Vec<&str> = f["mountOptions"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for o in ["ro", "rw", "nosuid", "nodev", "noexec", "bind", "rbind", "rprivate", "rslave", "rshared"] {
        assert!(opts.contains(&o), "mountOptions lacks {}", o);
    }
    let ns: Vec<&str> = f["linux"]["namespaces"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "namespaces {:?} lacks {}", ns, n);
    }
    let caps = f["linux"]["capabilities"].as_array().unwrap();
    assert!(caps.contains(&json!("CAP_SYS_ADMIN")) && caps.contains(&json!("CAP_CHOWN")));
    assert_eq!(f["linux"]["cgroup"]["v1"], true, "{}", f);
}

#[test]
fn unknown_command_fails() {
    if !require_root() {
        return;
    }
    let o = run_cmd(std::process::Command::new(runtime()).arg("frobnicate"), CMD_TIMEOUT);
    assert!(!o.status.success(), "{}", show(&o));
}

#[test]
fn version_flag() {
    if !require_root() {
        return;
    }
    let o = run_cmd(std::process::Command::new(runtime()).arg("--version"), CMD_TIMEOUT);
    assert_ok(&o);
    let out = s(&o.stdout);
    // runc: "runc version 1.1.5\ncommit: ...\nspec: 1.0.2-dev\n..."
    assert!(out.lines().next().unwrap_or("").contains(" version "), "{}", out);
    assert!(out.lines().any(|l| l.starts_with("spec: ")), "{}", out);
}
