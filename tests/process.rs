//! The container process as configured by config.json's `process` (and a
//! few linux.* knobs): user, umask, env, cwd, rlimits, capabilities,
//! no_new_privs, oom score, hostname, inherited fds.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;

#[test]
fn user_uid_gid_and_additional_gids() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("user");
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 2000]});
    env.sh("id -u; id -g; id -G; cat /proc/self/status | grep -E '^(Uid|Gid|Groups):'");
    let out = env.output_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{}", out);
    assert_eq!(lines[1], "1000", "{}", out);
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, vec!["10", "1000", "2000"], "{}", out);
    assert_eq!(field(&out, "Uid"), Some("1000\t1000\t1000\t1000"), "{}", out);
    assert_eq!(field(&out, "Gid"), Some("1000\t1000\t1000\t1000"), "{}", out);
    let mut sup: Vec<&str> = field(&out, "Groups").unwrap_or("").split_whitespace().collect();
    sup.sort();
    // the supplementary groups are exactly additionalGids: the gid is not
    // added, and nothing comes from /etc/group
    assert_eq!(sup, vec!["10", "2000"], "{}", out);
}

#[test]
fn user_root_has_no_supplementary_groups() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("user-root");
    env.sh("cat /proc/self/status | grep -E '^(Uid|Gid|Groups):'");
    let out = env.output_ok();
    assert_eq!(field(&out, "Uid"), Some("0\t0\t0\t0"), "{}", out);
    assert_eq!(field(&out, "Gid"), Some("0\t0\t0\t0"), "{}", out);
    assert_eq!(field(&out, "Groups"), Some(""), "{}", out);
}

#[test]
fn umask_from_config() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("umask");
    env.config["process"]["user"]["umask"] = json!(0o027);
    env.writable_tmp().sh("umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d");
    let out = env.output_ok();
    assert_eq!(out, "0027\n640\n750\n");
}

#[test]
fn umask_default_is_0022() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("umask-default");
    env.args(&["sh", "-c", "umask"]);
    assert_eq!(env.output_ok(), "0022\n");
}

#[test]
fn env_is_exactly_config_env_plus_home() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("env");
    env.config["process"]["env"] = json!(["PATH=/bin:/usr/bin", "FOO=bar", "WITH_EQUALS=a=b=c", "SPACES=x y  z"]);
    env.args(&["env"]);
    let out = env.output_ok();
    let mut vars: Vec<&str> = out.lines().collect();
    vars.sort();
    // HOME is added from the user's /etc/passwd entry when not in env
    assert_eq!(vars, vec!["FOO=bar", "HOME=/root", "PATH=/bin:/usr/bin", "SPACES=x y  z", "WITH_EQUALS=a=b=c"], "{}", out);
}

#[test]
fn home_comes_from_passwd_for_user() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("env-home");
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.sh("echo $HOME");
    assert_eq!(env.output_ok(), "/home/alice\n");

    let mut env = TestEnv::new("env-home-set");
    env.config["process"]["env"] = json!(["PATH=/bin", "HOME=/custom"]);
    env.sh("echo $HOME");
    assert_eq!(env.output_ok(), "/custom\n");
}

#[test]
fn cwd_from_config() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("cwd");
    env.config["process"]["cwd"] = json!("/etc");
    env.sh("pwd; ls passwd");
    assert_eq!(env.output_ok(), "/etc\npasswd\n");
}

#[test]
fn args_are_passed_verbatim() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("argv");
    env.args(&["sh", "-c", "for a in \"$@\"; do echo \"[$a]\"; done", "argv0", "one", "two words", "", "*"]);
    assert_eq!(env.output_ok(), "[one]\n[two words]\n[]\n[*]\n");
}

#[test]
fn program_found_via_path() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("path-lookup");
    // "echo" is resolved with the container's PATH, not the host's
    env.config["process"]["env"] = json!(["PATH=/bin"]);
    env.args(&["echo", "via-path"]);
    assert_eq!(env.output_ok(), "via-path\n");
}

#[test]
fn rlimits_applied() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("rlimits");
    env.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 2000, "hard": 3000}
    ]);
    env.sh("ulimit -n; cat /proc/self/limits");
    let out = env.output_ok();
    assert!(out.starts_with("512\n"), "{}", out);
    let limit = |name: &str| -> Vec<String> {
        out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {} in {}", name, out))[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(limit("Max open files"), vec!["512", "1024"]);
    assert_eq!(limit("Max core file size"), vec!["0", "0"]);
    assert_eq!(limit("Max processes"), vec!["2000", "3000"]);
}

fn cap_mask(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | (1u64 << b)))
}

const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_AUDIT_WRITE: u32 = 29;

#[test]
fn capabilities_non_root_with_ambient() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("caps-user");
    env.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    env.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_CHOWN", "CAP_KILL"]
    });
    env.args(&["cat", "/proc/self/status"]);
    let out = env.output_ok();
    assert_eq!(field(&out, "CapBnd"), Some(cap_mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_RAW, CAP_SYS_ADMIN]).as_str()), "{}", out);
    assert_eq!(field(&out, "CapInh"), Some(cap_mask(&[CAP_CHOWN, CAP_KILL, CAP_NET_RAW]).as_str()), "{}", out);
    // a non-root user's exec keeps only the ambient set in permitted/effective
    assert_eq!(field(&out, "CapPrm"), Some(cap_mask(&[CAP_CHOWN, CAP_KILL]).as_str()), "{}", out);
    assert_eq!(field(&out, "CapEff"), Some(cap_mask(&[CAP_CHOWN, CAP_KILL]).as_str()), "{}", out);
    assert_eq!(field(&out, "CapAmb"), Some(cap_mask(&[CAP_CHOWN, CAP_KILL]).as_str()), "{}", out);
}

#[test]
fn capabilities_root_default_spec() {
    if !require_root() {
        return;
    }
    // `spec`'s default: AUDIT_WRITE, KILL, NET_BIND_SERVICE in bounding,
    // effective, permitted and ambient but not inheritable, so ambient ends
    // up empty (a cap must be inheritable to be ambient).
    let mut env = TestEnv::new("caps-root");
    env.args(&["cat", "/proc/self/status"]);
    let out = env.output_ok();
    let want = cap_mask(&[CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE]);
    assert_eq!(field(&out, "CapBnd"), Some(want.as_str()), "{}", out);
    assert_eq!(field(&out, "CapPrm"), Some(want.as_str()), "{}", out);
    assert_eq!(field(&out, "CapEff"), Some(want.as_str()), "{}", out);
    assert_eq!(field(&out, "CapInh"), Some("0000000000000000"), "{}", out);
    assert_eq!(field(&out, "CapAmb"), Some("0000000000000000"), "{}", out);
}

#[test]
fn capabilities_restrict_what_root_can_do() {
    if !require_root() {
        return;
    }
    // without CAP_CHOWN root cannot chown a file it does not own... it owns
    // it; use CAP_SYS_ADMIN instead: mounting needs it.
    let mut env = TestEnv::new("caps-effect");
    env.writable_tmp().sh("mkdir /tmp/m; mount -t tmpfs none /tmp/m && echo mounted || echo denied");
    assert_eq!(env.output_ok().trim(), "denied");

    let mut env = TestEnv::new("caps-effect-admin");
    let all = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    env.config["process"]["capabilities"] = json!({
        "bounding": all, "effective": all, "permitted": all
    });
    env.writable_tmp().sh("mkdir /tmp/m; mount -t tmpfs none /tmp/m && echo mounted || echo denied");
    assert_eq!(env.output_ok().trim(), "mounted");
}

#[test]
fn no_new_privileges() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("nnp-on");
    env.config["process"]["noNewPrivileges"] = json!(true);
    env.args(&["cat", "/proc/self/status"]);
    let out = env.output_ok();
    assert_eq!(field(&out, "NoNewPrivs"), Some("1"), "{}", out);

    let mut env = TestEnv::new("nnp-off");
    env.config["process"]["noNewPrivileges"] = json!(false);
    env.args(&["cat", "/proc/self/status"]);
    let out = env.output_ok();
    assert_eq!(field(&out, "NoNewPrivs"), Some("0"), "{}", out);
}

#[test]
fn oom_score_adj() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("oom");
    env.config["process"]["oomScoreAdj"] = json!(517);
    env.args(&["cat", "/proc/self/oom_score_adj"]);
    assert_eq!(env.output_ok(), "517\n");
}

#[test]
fn hostname_and_domainname() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("hostname");
    env.config["hostname"] = json!("hull-test-host");
    env.config["domainname"] = json!("hull.example");
    env.sh("hostname; cat /proc/sys/kernel/hostname /proc/sys/kernel/domainname");
    let out = env.output_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["hull-test-host", "hull-test-host"], "{}", out);
    // runc 1.1 ignores `domainname` (it prints "(none)"); hull follows the
    // OCI runtime-spec and sets it.
    if !is_runc() {
        assert_eq!(lines[2], "hull.example", "{}", out);
    }
    // the host's names are untouched
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "hull-test-host");
}

#[test]
fn no_leaked_fds() {
    if !require_root() {
        return;
    }
    // busybox ls opens the directory itself as fd 3
    let mut env = TestEnv::new("fds");
    env.args(&["ls", "/proc/self/fd"]);
    assert_eq!(env.output_ok(), "0\n1\n2\n3\n");

    // same with create/start (stdio inherited from `create`)
    let mut env = TestEnv::new("fds-create");
    env.args(&["ls", "/proc/self/fd"]);
    env.start_running();
    env.wait_status("stopped");
    assert_eq!(env.container_stdout(), "0\n1\n2\n3\n");
}

#[test]
fn preserve_fds_passes_extra_fd() {
    if !require_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    std::fs::write(&data, "preserved-content\n").unwrap();
    let file = std::fs::File::open(&data).unwrap();
    let fd = file.as_raw_fd();

    let mut env = TestEnv::new("preserve-fds");
    env.sh("cat <&3; ls /proc/self/fd");
    env.write_config();
    let b = env.bundle_path();
    let mut cmd = env.cmd(&["run", "--preserve-fds", "1", "--bundle", b.to_str().unwrap(), &env.id]);
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert_ok(&o);
    // fd 3 is the preserved file, ls's own directory fd is 4
    assert_eq!(s(&o.stdout), "preserved-content\n0\n1\n2\n3\n4\n");
    drop(file);
}

#[test]
fn extra_fds_not_preserved_by_default() {
    if !require_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    std::fs::write(&data, "x").unwrap();
    let file = std::fs::File::open(&data).unwrap();
    let fd = file.as_raw_fd();
    let mut env = TestEnv::new("no-preserve");
    env.args(&["ls", "/proc/self/fd"]);
    env.write_config();
    let b = env.bundle_path();
    let mut cmd = env.cmd(&["run", "--bundle", b.to_str().unwrap(), &env.id]);
    unsafe {
        cmd.pre_exec(move || {
            // fd 5 without O_CLOEXEC, as a careless caller would leave it
            // dup2 onto itself keeps FD_CLOEXEC: clear it explicitly
            if libc::dup2(fd, 5) < 0 || libc::fcntl(5, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = run_cmd(&mut cmd, CMD_TIMEOUT);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "0\n1\n2\n3\n");
}

#[test]
fn runs_as_pid_1_in_new_pid_namespace() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("pid1");
    env.sh("echo $$; ps -o pid,comm");
    let out = env.output_ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{}", out);
    lines.next(); // header
                  // sh execs its last command, so ps is pid 1 and the only process
    let procs: Vec<&str> = lines.map(|l| l.trim()).collect();
    assert_eq!(procs, vec!["1 ps"], "{}", out);
}

/// The container's program starts with default signal dispositions and an
/// empty mask (hull itself, a Rust program, ignores SIGPIPE).
#[test]
fn signals_start_at_their_defaults() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("sigdfl");
    // The program itself (a shell would set its own dispositions).
    env.args(&["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]);
    let out = env.output_ok();
    assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
    assert!(out.contains("SigIgn:\t0000000000000000"), "{out}");
}
