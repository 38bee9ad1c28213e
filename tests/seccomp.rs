//! Seccomp profiles (`linux.seccomp`), hull's default profile, and the
//! AppArmor/SELinux labels (applied where the host has the module, refused
//! with a clear error where it does not).

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

/// A container with a writable /tmp and the given profile.
fn with_profile(name: &str, profile: Value) -> TestEnv {
    let mut env = TestEnv::new(name);
    env.writable_tmp();
    env.config["linux"]["seccomp"] = profile;
    env
}

/// An allow-all profile that answers `action` (and errnoRet) for `names`.
fn block(names: &[&str], action: &str, errno_ret: Option<u32>) -> Value {
    let mut rule = json!({"names": names, "action": action});
    if let Some(e) = errno_ret {
        rule["errnoRet"] = json!(e);
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})
}

/// hull's built-in profile, as `hull spec --seccomp-default` writes it for
/// the default config (no CAP_SYS_ADMIN). None (with a note) under runc,
/// which has no such flag.
fn default_profile() -> Option<Value> {
    if is_runc() {
        eprintln!("skipped: the built-in default profile is hull's (`hull spec --seccomp-default`)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let o = run_cmd(Command::new(runtime()).args(["spec", "--seccomp-default"]).current_dir(dir.path()), CMD_TIMEOUT);
    assert_ok(&o);
    let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap()).unwrap();
    Some(config["linux"]["seccomp"].clone())
}

fn add_cap(env: &mut TestEnv, cap: &str) {
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!(cap));
    }
}

#[test]
fn blocked_syscall_fails_with_eperm_and_others_work() {
    if !require_root() {
        return;
    }
    let mut env = with_profile("sc-eperm", block(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None));
    env.sh("mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch-ok; grep -E '^Seccomp:' /proc/self/status");
    let o = env.run_fg();
    assert_ok(&o);
    let out = s(&o.stdout);
    assert!(out.contains("mkdir=1") && out.contains("touch-ok"), "{}", show(&o));
    assert!(out.contains("Seccomp:\t2"), "the process should run in filter mode:\n{}", show(&o));
    assert!(s(&o.stderr).contains("Operation not permitted"), "{}", show(&o));
}

#[test]
fn errno_ret_and_default_errno_ret_are_returned() {
    if !require_root() {
        return;
    }
    // ENOSPC (28) cannot come from mkdir on an empty tmpfs: it is the filter.
    let mut env = with_profile("sc-errnoret", block(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", Some(28)));
    env.sh("mkdir /tmp/x; echo mkdir=$?");
    let o = env.run_fg();
    assert_ok(&o);
    assert!(s(&o.stdout).contains("mkdir=1"), "{}", show(&o));
    assert!(s(&o.stderr).contains("No space left on device"), "{}", show(&o));

    // sethostname without CAP_SYS_ADMIN would be EPERM: EROFS is the filter.
    let mut env = with_profile("sc-hostname", block(&["sethostname"], "SCMP_ACT_ERRNO", Some(30)));
    env.sh("hostname other; echo host=$?");
    let o = env.run_fg();
    assert!(s(&o.stdout).contains("host=1"), "{}", show(&o));
    assert!(s(&o.stderr).contains("Read-only file system"), "{}", show(&o));

    // A default-deny profile answers what it does not list with
    // defaultErrnoRet: ENOSYS (38) for unshare here.
    let Some(mut profile) = default_profile() else { return };
    profile["defaultErrnoRet"] = json!(38);
    let mut env = with_profile("sc-default-errno", profile);
    env.sh("unshare -m true; echo unshare=$?");
    let o = env.run_fg();
    assert!(s(&o.stdout).contains("unshare=1"), "{}", show(&o));
    assert!(s(&o.stderr).contains("Function not implemented"), "{}", show(&o));
}

#[test]
fn uname_can_be_blocked() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("sc-uname-control");
    env.args(&["uname", "-s"]);
    assert_eq!(env.output_ok(), "Linux\n");
    let mut env = with_profile("sc-uname", block(&["uname"], "SCMP_ACT_ERRNO", None));
    env.args(&["uname", "-s"]);
    // busybox does not check uname's result: it prints an empty name.
    let out = env.output_ok();
    assert!(!out.contains("Linux"), "uname should have been refused: {out:?}");
}

#[test]
fn argument_filters_match_only_their_values() {
    if !require_root() {
        return;
    }
    let mut env = with_profile(
        "sc-args",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            // kill(pid, 0) refused, other signals allowed
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
            // a mode with all "other" bits set refused (value = mask)
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 7, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 7, "valueTwo": 7, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]}),
    );
    env.sh("kill -0 $$; echo kill0=$?; kill -CONT $$; echo cont=$?; touch /tmp/f; \
         chmod 707 /tmp/f; echo chmod707=$?; chmod 700 /tmp/f; echo chmod700=$?");
    let o = env.run_fg();
    assert_ok(&o);
    let out = s(&o.stdout);
    for want in ["kill0=1", "cont=0", "chmod707=1", "chmod700=0"] {
        assert!(out.contains(want), "want {want}:\n{}", show(&o));
    }
}

#[test]
fn kill_process_action_kills_with_sigsys() {
    if !require_root() {
        return;
    }
    let mut env = with_profile("sc-kill", block(&["mkdir", "mkdirat"], "SCMP_ACT_KILL_PROCESS", None));
    env.sh("mkdir /tmp/x; echo mkdir=$?");
    let o = env.run_fg();
    // 159 = 128 + SIGSYS
    assert!(s(&o.stdout).contains("mkdir=159"), "{}", show(&o));
}

#[test]
fn filter_flags_are_accepted() {
    if !require_root() {
        return;
    }
    if is_runc() {
        eprintln!("skipped: runc 1.1 refuses linux.seccomp.flags");
        return;
    }
    let mut profile = block(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None);
    profile["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
    profile["architectures"] = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    if !cfg!(target_arch = "x86_64") {
        profile.as_object_mut().unwrap().remove("architectures");
    }
    let mut env = with_profile("sc-flags", profile);
    env.sh("mkdir /tmp/x; echo mkdir=$?");
    let o = env.run_fg();
    assert_ok(&o);
    assert!(s(&o.stdout).contains("mkdir=1"), "{}", show(&o));
}

#[test]
fn unknown_syscall_names_are_skipped() {
    if !require_root() {
        return;
    }
    let mut env = with_profile("sc-unknown", block(&["no_such_syscall_in_any_kernel", "mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None));
    env.sh("mkdir /tmp/x; echo mkdir=$?");
    let o = env.run_fg();
    assert_ok(&o);
    assert!(s(&o.stdout).contains("mkdir=1"), "{}", show(&o));
}

#[test]
fn malformed_profiles_fail_create_naming_the_field_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let rule = |extra: Value| {
        let mut r = json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [r]})
    };
    let cases = [
        ("sc-bad-action", rule(json!({"action": "SCMP_ACT_BOGUS"})), vec!["syscalls[0].action"]),
        ("sc-bad-op", rule(json!({"args": [{"index": 0, "value": 1, "op": "SCMP_CMP_BOGUS"}]})), vec!["syscalls[0].args[0].op"]),
        (
            "sc-bad-index",
            rule(json!({"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]})),
            vec!["syscalls[0].args[0].index", "index"],
        ),
        ("sc-bad-arch", json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}), vec!["architectures"]),
        ("sc-bad-default", json!({"defaultAction": "SCMP_ACT_MAYBE"}), vec!["defaultAction"]),
        ("sc-listener", json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/seccomp-agent.sock"}), vec!["listenerPath"]),
    ];
    for (name, profile, needles) in cases {
        if is_runc() && name == "sc-listener" {
            continue; // runc implements the seccomp agent
        }
        let env = with_profile(name, profile);
        let o = env.create();
        let needles: Vec<&str> = needles.to_vec();
        if is_runc() {
            assert_fails(&o);
        } else {
            assert_fails_mentioning(&o, &needles);
        }
        assert_no_leftovers(&env);
    }
}

#[test]
fn default_profile_runs_a_shell_and_blocks_namespaces_and_mounts() {
    if !require_root() {
        return;
    }
    let Some(profile) = default_profile() else { return };
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");

    // An ordinary shell session works under the profile.
    let mut env = with_profile("sc-default-shell", profile.clone());
    env.sh("echo hi > /tmp/f && cat /tmp/f && ls / >/dev/null && mkdir /tmp/d && chmod 700 /tmp/d && \
         uname -s && ps >/dev/null && (sleep 0.1 &) && wait && grep -E '^Seccomp:' /proc/self/status");
    let o = env.run_fg();
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "hi\nLinux\nSeccomp:\t2\n", "{}", show(&o));

    // With CAP_SYS_ADMIN and no filter, unshare and mount work ...
    let script = "unshare -m true; echo unshare=$?; mount -t tmpfs none /mnt; echo mount=$?";
    let mut control = TestEnv::new("sc-default-control");
    add_cap(&mut control, "CAP_SYS_ADMIN");
    control.sh(script);
    let o = control.run_fg();
    assert!(s(&o.stdout).contains("unshare=0") && s(&o.stdout).contains("mount=0"), "control:\n{}", show(&o));

    // ... and the default profile made for a process without it refuses
    // them even when the capability is there.
    let mut env = with_profile("sc-default-blocks", profile);
    add_cap(&mut env, "CAP_SYS_ADMIN");
    env.sh(script);
    let o = env.run_fg();
    assert!(s(&o.stdout).contains("unshare=1") && s(&o.stdout).contains("mount=1"), "{}", show(&o));
    assert!(s(&o.stderr).contains("Operation not permitted"), "{}", show(&o));
}

#[test]
fn exec_processes_get_the_containers_filter() {
    if !require_root() {
        return;
    }
    let mut env = with_profile("sc-exec", block(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None));
    env.args(&["sleep", "1000"]);
    env.start_running();
    env.wait_status("running");
    let o = env.exec(&["sh", "-c", "mkdir /tmp/x; echo mkdir=$?; grep -E '^Seccomp:' /proc/self/status"]);
    assert_ok(&o);
    assert!(s(&o.stdout).contains("mkdir=1") && s(&o.stdout).contains("Seccomp:\t2"), "{}", show(&o));
    assert!(s(&o.stderr).contains("Operation not permitted"), "{}", show(&o));
    // exec without no_new_privs, as another user: the filter is loaded
    // before privileges are dropped and still applies.
    let o = env.run(&["exec", "--user", "1000:1000", &env.id, "sh", "-c", "mkdir /tmp/y; echo mkdir=$?; id -u"]);
    assert!(s(&o.stdout).contains("mkdir=1") && s(&o.stdout).contains("1000"), "{}", show(&o));
}

#[test]
fn exec_works_when_the_profile_blocks_the_runtimes_own_messages() {
    if !require_root() {
        return;
    }
    // After the filter is loaded the exec'd process cannot report on its
    // handshake socket; exec must still run it and pass its exit code.
    let mut env = with_profile("sc-exec-nosend", block(&["send", "sendto", "sendmsg"], "SCMP_ACT_ERRNO", None));
    env.args(&["sleep", "1000"]);
    env.start_running();
    env.wait_status("running");
    let o = env.exec(&["sh", "-c", "echo hello; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert_eq!(s(&o.stdout), "hello\n", "{}", show(&o));
}

#[test]
fn with_no_new_privs_the_filter_is_loaded_after_the_user_switch() {
    if !require_root() {
        return;
    }
    // The runtime itself calls these between start and execve; with
    // no_new_privs the filter comes after them, so a profile may deny them.
    let denied = ["capset", "setresuid", "setresgid", "setgroups", "chdir", "umask"];
    let mut env = with_profile("sc-nnp-last", block(&denied, "SCMP_ACT_ERRNO", None));
    env.config["process"]["noNewPrivileges"] = json!(true);
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.config["process"]["cwd"] = json!("/tmp");
    env.args(&["id", "-u"]);
    assert_eq!(env.output_ok(), "1000\n");
}

#[test]
fn without_no_new_privs_the_filter_is_loaded_before_dropping_privileges() {
    if !require_root() {
        return;
    }
    let mut env = with_profile("sc-nnp-off", block(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", None));
    env.config["process"]["noNewPrivileges"] = json!(false);
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.sh("mkdir /tmp/x; echo mkdir=$?; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status");
    let o = env.run_fg();
    assert_ok(&o);
    let out = s(&o.stdout);
    assert!(out.contains("mkdir=1"), "{}", show(&o));
    assert!(out.contains("Seccomp:\t2") && out.contains("NoNewPrivs:\t0"), "{}", show(&o));
    assert!(out.contains("CapEff:\t0000000000000000"), "{}", show(&o));
}

#[test]
fn features_report_seccomp_and_host_lsms() {
    if !require_root() {
        return;
    }
    let o = run_cmd(Command::new(runtime()).arg("features"), CMD_TIMEOUT);
    assert_ok(&o);
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    let sc = &f["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true, "{sc}");
    for (key, want) in [("actions", "SCMP_ACT_ERRNO"), ("operators", "SCMP_CMP_MASKED_EQ")] {
        assert!(sc[key].as_array().unwrap().iter().any(|v| v == want), "{key}: {sc}");
    }
    if cfg!(target_arch = "x86_64") {
        assert!(sc["archs"].as_array().unwrap().iter().any(|v| v == "SCMP_ARCH_X86_64"), "{sc}");
    }
    if is_runc() {
        return; // runc 1.1 reports "compiled in", not what the host has
    }
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'));
    assert_eq!(f["linux"]["apparmor"]["enabled"], apparmor);
    if !std::path::Path::new("/sys/fs/selinux").exists() {
        assert_eq!(f["linux"]["selinux"]["enabled"], false);
    }
}

fn apparmor_on_host() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
}

fn selinux_on_host() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

#[test]
fn apparmor_profile_is_applied_or_refused() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("sc-apparmor");
    if apparmor_on_host() {
        // "unconfined" exists wherever AppArmor runs.
        env.config["process"]["apparmorProfile"] = json!("unconfined");
        env.args(&["cat", "/proc/self/attr/current"]);
        let out = env.output_ok();
        assert!(out.starts_with("unconfined"), "{out:?}");
        return;
    }
    eprintln!("skipped: applying an AppArmor profile (AppArmor is not enabled on this host); checking the refusal instead");
    if is_runc() {
        return; // runc 1.1 ignores the profile on such hosts
    }
    env.config["process"]["apparmorProfile"] = json!("hull-test");
    let o = env.create();
    assert_fails_mentioning(&o, &["apparmorProfile"]);
    assert!(s(&o.stderr).contains("AppArmor is not enabled on the host"), "{}", show(&o));
    assert_no_leftovers(&env);
}

#[test]
fn selinux_labels_without_selinux_are_ignored_with_a_warning() {
    if !require_root() {
        return;
    }
    if selinux_on_host() {
        eprintln!("skipped: applying SELinux labels needs a policy with container types, which these tests do not assume");
        return;
    }
    // Without SELinux a label has no effect: crun and youki run the
    // container and warn (runc refuses a process label); hull does as crun.
    let mut env = TestEnv::new("sc-selinux-process");
    env.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    env.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    env.args(&["true"]);
    let o = env.create();
    assert_ok(&o);
    assert!(s(&o.stderr).contains("linux.mountLabel") && s(&o.stderr).contains("process.selinuxLabel"), "{}", show(&o));
}
