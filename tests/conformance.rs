//! runtime-spec 1.2/1.3 conformance: lifecycle errors, unknown fields and
//! versions, namespaces without a mount namespace or joined by path,
//! rootfs propagation, mount safety, recursive mount attributes, hooks that
//! fail late, capabilities and LSM labels, and errors printed as runc does.
//! Each test checks the effect from inside the container where there is one.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A host process holding new namespaces (`unshare FLAGS sleep`), killed
/// on drop.
struct NsHolder(Child);

impl NsHolder {
    fn new(flags: &[&str]) -> NsHolder {
        let child = Command::new("unshare")
            .args(flags)
            .args(["sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare");
        let h = NsHolder(child);
        // unshare execs sleep once the namespaces exist
        wait_for("unshare to exec sleep", WAIT_TIMEOUT, || {
            fs::read_to_string(format!("/proc/{}/comm", h.pid())).is_ok_and(|c| c.trim() == "sleep")
        });
        h
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ns(&self, name: &str) -> String {
        format!("/proc/{}/ns/{name}", self.pid())
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Detaches the mounts at and under a host path on drop (`umount -R -l`).
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = run_cmd(Command::new("umount").arg("-R").arg("-l").arg(&self.0), CMD_TIMEOUT);
    }
}

fn host(cmd: &str, args: &[&str]) -> std::process::Output {
    run_cmd(Command::new(cmd).args(args), CMD_TIMEOUT)
}

/// Mount points (field 5 of mountinfo) in our mount namespace under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|p| p == d || p.starts_with(&format!("{d}/")))
        .collect()
}

// --- lifecycle ---

#[test]
fn kill_of_empty_unknown_or_stopped_container_fails() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("kill-errors");
    assert_fails(&env.run(&["kill", "", "KILL"]));
    assert_fails_mentioning(&env.run(&["kill", "no-such-container-x", "KILL"]), &["does not exist"]);
    env.args(&["true"]);
    env.start_running();
    env.wait_status("stopped");
    assert_fails_mentioning(&env.kill("TERM"), &["not running"]);
    assert_eq!(env.status().as_deref(), Some("stopped"));
}

#[test]
fn create_pid_file_matches_state_of_created_container() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("pid-file");
    env.args(&["sleep", "1000"]);
    env.write_config();
    let pid_file = env.bundle_path().join("ctr.pid");
    let b = env.bundle_path();
    let o = env.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), "--pid-file", pid_file.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    // The pid file is complete when create returns.
    let pid: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().expect("pid file holds a number");
    let st = env.state_json();
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"], json!(pid));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    // start of a container that is not created fails
    env.start_ok();
    assert_fails_mentioning(&env.start(), &["running"]);
}

#[test]
fn delete_of_running_container_fails_and_leaves_it_running() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("delete-running-untouched");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let pid = env.pid();
    assert_fails_mentioning(&env.delete(), &["not stopped"]);
    assert_eq!(env.status().as_deref(), Some("running"));
    assert_eq!(env.pid(), pid);
    assert_fails_mentioning(&env.run(&["delete", "no-such-container-x"]), &["does not exist"]);
}

// --- errors as runc prints them ---

#[test]
fn errors_are_printed_as_runc_prints_them() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("error-format");
    // text: a logrus line on stderr
    let o = env.run(&["state", "no-such-ctr"]);
    assert!(!o.status.success());
    let err = s(&o.stderr);
    assert!(err.starts_with("time=\"") && err.contains(" level=error msg=\""), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    // JSON with --log-format json
    let o = env.run(&["--log-format", "json", "state", "no-such-ctr"]);
    let v: Value = serde_json::from_str(s(&o.stderr).trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", show(&o)));
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
    assert!(v["time"].is_string());
    // --log FILE: the file gets the JSON entry containerd reads, stderr the message
    let log = env.bundle_path().join("runtime.log");
    let o = env.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "state", "no-such-ctr"]);
    assert!(!o.status.success());
    let last = fs::read_to_string(&log).unwrap();
    let v: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
    assert!(s(&o.stderr).contains("does not exist") && !s(&o.stderr).contains("level="), "{}", show(&o));
}

// --- unknown things ---

#[test]
fn unknown_fields_and_annotations_are_accepted() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("unknown-fields");
    env.config["annotations"] = json!({"org.example.never-heard-of": "x", "com.vendor/thing": "{\"a\":1}"});
    env.config["someFutureTopLevelField"] = json!({"nested": [1, 2, 3]});
    env.config["linux"]["someFutureLinuxField"] = json!(true);
    env.sh("echo ran");
    assert_eq!(env.output_ok().trim(), "ran");
}

#[test]
fn unsupported_oci_version_major_is_refused() {
    if !require_root() {
        return;
    }
    for v in ["2.0.0", "0.9.0", "banana"] {
        let mut env = TestEnv::new("oci-version");
        env.config["ociVersion"] = json!(v);
        env.args(&["true"]);
        let o = env.create();
        assert_fails_mentioning(&o, &["ociVersion"]);
        assert_no_leftovers(&env);
    }
    let mut env = TestEnv::new("oci-version-ok");
    env.config["ociVersion"] = json!("1.3.0");
    env.args(&["true"]);
    assert_ok(&env.run_fg());
}

// --- namespaces ---

fn without_mount_namespace(env: &mut TestEnv) {
    env.drop_namespace("mount");
    env.config["mounts"] = json!([]);
    let linux = env.config["linux"].as_object_mut().unwrap();
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    // The rootfs is shared by all tests and nothing writes to it here; a
    // read-only root would need a remount, i.e. a mount namespace.
    env.config["root"]["readonly"] = json!(false);
}

#[test]
fn no_mount_namespace_runs_chrooted_without_touching_host_mounts() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-mntns");
    without_mount_namespace(&mut env);
    let rootfs = rootfs();
    let before = host_mounts_under(&rootfs);
    let host_root = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap()
        .to_string();
    env.sh("test -x /bin/busybox && test ! -e /tmp/hull-no-such && echo chrooted; sleep 1000");
    assert_ok(&env.run_detached());
    wait_for("container output", WAIT_TIMEOUT, || env.container_stdout().contains("chrooted"));
    let pid = env.pid();
    assert_eq!(ns_link(&pid.to_string(), "mnt"), ns_link("self", "mnt"), "the container must share the host's mount namespace");
    assert_eq!(fs::read_link(format!("/proc/{pid}/root")).unwrap(), rootfs);
    // exec'd processes are chrooted the same way
    let o = env.exec(&["sh", "-c", "test -x /bin/busybox && echo exec-chrooted"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout).trim(), "exec-chrooted");
    assert_eq!(host_mounts_under(&rootfs), before, "mounts appeared on the host under the rootfs");
    let root_now = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .unwrap()
        .to_string();
    assert_eq!(root_now, host_root, "the host's / changed");
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_eq!(host_mounts_under(&rootfs), before);
}

#[test]
fn no_mount_namespace_refuses_mounts_by_name() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-mntns-mounts");
    without_mount_namespace(&mut env);
    env.config["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    env.args(&["true"]);
    let rootfs = rootfs();
    let before = host_mounts_under(&rootfs);
    assert_fails_mentioning(&env.create(), &["mounts", "mount namespace"]);
    assert_eq!(host_mounts_under(&rootfs), before);
    assert_no_leftovers(&env);
}

#[test]
fn hostname_in_a_uts_namespace_joined_by_path() {
    if !require_root() {
        return;
    }
    let holder = NsHolder::new(&["--uts"]);
    let host_name = s(&host("hostname", &[]).stdout);
    let mut env = TestEnv::new("joined-uts");
    env.set_namespace("uts", Some(&holder.ns("uts")));
    env.config["hostname"] = json!("joined-uts-host");
    env.args(&["hostname"]);
    assert_eq!(env.output_ok().trim(), "joined-uts-host");
    // it is the joined namespace's hostname now, not the host's
    let o = host("nsenter", &["-u", "-t", &holder.pid().to_string(), "hostname"]);
    assert_eq!(s(&o.stdout).trim(), "joined-uts-host");
    assert_eq!(s(&host("hostname", &[]).stdout), host_name);
    // joining the host's own UTS namespace by path is still refused
    let mut env = TestEnv::new("joined-host-uts");
    env.set_namespace("uts", Some("/proc/self/ns/uts"));
    env.config["hostname"] = json!("nope");
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["hostname"]);
    assert_no_leftovers(&env);
}

#[test]
fn net_and_ipc_sysctls_in_namespaces_joined_by_path() {
    if !require_root() {
        return;
    }
    let holder = NsHolder::new(&["--net", "--ipc"]);
    let mut env = TestEnv::new("joined-sysctl");
    env.set_namespace("network", Some(&holder.ns("net")));
    env.set_namespace("ipc", Some(&holder.ns("ipc")));
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    env.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    assert_eq!(env.output_ok().split_whitespace().collect::<Vec<_>>(), ["1", "1234"]);
    // set in the joined namespaces, not in the host's
    let o =
        host("nsenter", &["-n", "-i", "-t", &holder.pid().to_string(), "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"]);
    assert_eq!(s(&o.stdout).split_whitespace().collect::<Vec<_>>(), ["1", "1234"]);
    assert_ne!(fs::read_to_string("/proc/sys/kernel/shmmni").unwrap().trim(), "1234");
    // the host's own network namespace by path: refused
    let mut env = TestEnv::new("joined-host-net");
    env.set_namespace("network", Some("/proc/self/ns/net"));
    env.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["net.ipv4.ip_forward"]);
    assert_no_leftovers(&env);
}

/// The optional fields of the container's "/" in its mountinfo.
fn root_propagation_inside(value: &str) -> String {
    let mut env = TestEnv::new(&format!("rootprop-{value}"));
    env.config["linux"]["rootfsPropagation"] = json!(value);
    env.sh("awk '$5 == \"/\" { for (i = 7; $i != \"-\"; i++) printf \"%s \", $i; print \"end\" }' /proc/self/mountinfo");
    let o = env.run_fg();
    assert_ok(&o);
    s(&o.stdout)
}

#[test]
fn rootfs_propagation_values_all_work() {
    if !require_root() {
        return;
    }
    let shared = root_propagation_inside("shared");
    assert!(shared.contains("shared:"), "{shared}");
    let rshared = root_propagation_inside("rshared");
    assert!(rshared.contains("shared:"), "{rshared}");
    let unbindable = root_propagation_inside("unbindable");
    assert!(unbindable.contains("unbindable"), "{unbindable}");
    for v in ["private", "rprivate", "slave", "rslave"] {
        let out = root_propagation_inside(v);
        assert!(!out.contains("shared:") && !out.contains("unbindable"), "{v}: {out}");
    }
}

#[test]
fn rshared_root_with_a_bidirectional_mount_as_containerd_writes_it() {
    if !require_root() {
        return;
    }
    let dir = host_tempdir("hull-bidir-");
    let d = dir.path().to_str().unwrap().to_string();
    assert_ok(&host("mount", &["--bind", &d, &d]));
    assert_ok(&host("mount", &["--make-shared", &d]));
    let _guard = Unmount(dir.path().to_path_buf());
    fs::create_dir(dir.path().join("sub")).unwrap();
    let mut env = TestEnv::new("bidir");
    // containerd's CRI plugin: rootfsPropagation rshared and the volume as
    // an rbind with rshared for Bidirectional propagation.
    env.config["linux"]["rootfsPropagation"] = json!("rshared");
    env.add_mount(json!({"destination": "/mnt/bidir", "type": "bind", "source": d, "options": ["rbind", "rshared", "rw"]}));
    let caps = &mut env.config["process"]["capabilities"];
    for set in ["bounding", "effective", "permitted"] {
        caps[set].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
    }
    env.sh("mount -t tmpfs -o size=1m from-container /mnt/bidir/sub && echo mounted");
    let o = env.run_fg();
    assert_ok(&o);
    assert_eq!(s(&o.stdout).trim(), "mounted");
    // the container's mount came back to the host
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mi.lines().any(|l| l.contains(&format!(" {d}/sub ")) && l.contains("from-container")), "{mi}");
}

// --- mounts ---

/// A private writable copy of the test rootfs (for tests that plant things).
fn rootfs_copy() -> tempfile::TempDir {
    let dir = host_tempdir("hull-rootfs-copy-");
    assert_ok(&host("cp", &["-a", &format!("{}/.", rootfs().display()), dir.path().to_str().unwrap()]));
    dir
}

#[test]
fn proc_or_sysfs_on_a_symlink_is_refused() {
    if !require_root() {
        return;
    }
    for (typ, dest) in [("proc", "/proc"), ("sysfs", "/sys")] {
        let copy = rootfs_copy();
        let planted = copy.path().join(dest.trim_start_matches('/'));
        let _ = fs::remove_dir_all(&planted);
        std::os::unix::fs::symlink("/tmp", &planted).unwrap();
        let mut env = TestEnv::new(&format!("symlink-{typ}"));
        env.config["root"]["path"] = json!(copy.path().to_str().unwrap());
        env.args(&["true"]);
        let o = env.create();
        assert_fails_mentioning(&o, &["symlink"]);
        assert!(s(&o.stderr).contains(typ), "{}", show(&o));
        assert_no_leftovers(&env);
        assert!(host_mounts_under(copy.path()).is_empty());
    }
}

#[test]
fn fifo_devices_are_created_without_a_cgroup_rule() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("fifo-dev");
    env.config["linux"]["devices"] = json!([{"path": "/dev/hullfifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o600}]);
    env.sh("test -p /dev/hullfifo && stat -c %a /dev/hullfifo");
    assert_eq!(env.output_ok().trim(), "600");
}

#[test]
fn recursive_mount_options_reach_every_submount() {
    if !require_root() {
        return;
    }
    let dir = host_tempdir("hull-rro-");
    let d = dir.path().to_str().unwrap().to_string();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    assert_ok(&host("mount", &["-t", "tmpfs", "-o", "size=1m", "hull-rro-sub", sub.to_str().unwrap()]));
    let _guard = Unmount(sub.clone());
    let mut env = TestEnv::new("rro");
    env.add_mount(json!({"destination": "/mnt/r", "type": "bind", "source": d,
        "options": ["rbind", "rro", "rnoatime", "rnosuid", "rnodev", "rnoexec"]}));
    env.sh("grep ' /mnt/r/sub ' /proc/self/mountinfo; touch /mnt/r/sub/x 2>/dev/null && echo WRITABLE; true");
    let out = env.output_ok();
    let line = out.lines().next().unwrap_or_default();
    let opts = line.split(' ').nth(5).unwrap_or_default();
    for want in ["ro", "noatime", "nosuid", "nodev", "noexec"] {
        assert!(opts.split(',').any(|o| o == want), "submount lacks {want}: {line}");
    }
    assert!(!out.contains("WRITABLE"), "{out}");
    // the host's submount is untouched
    let host_line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(&format!(" {} ", sub.display())))
        .unwrap()
        .to_string();
    assert!(host_line.split(' ').nth(5).unwrap().starts_with("rw"), "{host_line}");
}

// --- idmapped mounts ---

/// A host dir with files owned by 0:0 and 5:7 and 3000:3000, and a tmpfs
/// submount holding a root-owned file.
fn idmap_source(prefix: &str) -> (tempfile::TempDir, Unmount) {
    let dir = host_tempdir(prefix);
    for (name, uid, gid) in [("a", 0, 0), ("b", 5, 7), ("c", 3000, 3000)] {
        let p = dir.path().join(name);
        fs::write(&p, name).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    assert_ok(&host("mount", &["-t", "tmpfs", "-o", "size=1m", "hull-idmap-sub", sub.to_str().unwrap()]));
    let guard = Unmount(sub.clone());
    fs::write(sub.join("s"), "s").unwrap();
    (dir, guard)
}

#[test]
fn idmapped_mount_shows_files_with_mapped_owners() {
    if !require_root() {
        return;
    }
    let (dir, _guard) = idmap_source("hull-idmap-");
    let d = dir.path().to_str().unwrap();
    let uid = json!([{"containerID": 0, "hostID": 1234, "size": 10}]);
    let gid = json!([{"containerID": 0, "hostID": 2345, "size": 10}]);
    let mut env = TestEnv::new("idmap");
    // mappings on an rbind: the whole tree; "idmap": the top mount only
    env.add_mount(
        json!({"destination": "/mnt/r", "type": "bind", "source": d, "options": ["rbind"], "uidMappings": uid, "gidMappings": gid}),
    );
    env.add_mount(json!({"destination": "/mnt/t", "type": "bind", "source": d, "options": ["rbind", "idmap"], "uidMappings": uid, "gidMappings": gid}));
    env.sh("cd /mnt/r && stat -c '%n %u %g' a b c sub/s; stat -c '%n %u %g' /mnt/t/a /mnt/t/sub/s");
    let out = env.output_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["a 1234 2345", "b 1239 2352", "c 65534 65534", "sub/s 1234 2345", "/mnt/t/a 1234 2345", "/mnt/t/sub/s 0 0"],
        "{out}"
    );
    // the host's view is unchanged
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&fs::metadata(dir.path().join("b")).unwrap()), 5);
}

#[test]
fn idmap_option_without_mappings_uses_the_user_namespace_mappings() {
    if !require_root() {
        return;
    }
    let (dir, _guard) = idmap_source("hull-idmap-userns-");
    let mut env = TestEnv::new("idmap-userns");
    env.set_namespace("user", None);
    env.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    env.config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/sys/fs/cgroup");
    // destinations the fixture rootfs is built with (the container's root
    // cannot create directories in a rootfs owned by the host's root, and
    // other tests' mount points may not be made yet)
    env.add_mount(json!({"destination": "/home/alice", "type": "bind", "source": dir.path(), "options": ["bind", "idmap"]}));
    env.add_mount(json!({"destination": "/home/bob", "type": "bind", "source": dir.path(), "options": ["rbind"]}));
    // through the idmapped mount the container's root owns what the host's
    // root owns; through a plain bind the host's root is unmapped (65534)
    env.sh("stat -c '%u %g' /home/alice/a /home/alice/b /home/bob/a");
    assert_eq!(env.output_ok(), "0 0\n5 7\n65534 65534\n");
}

#[test]
fn idmapped_mount_of_a_filesystem_without_idmapping_is_refused() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("idmap-proc");
    let maps = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    env.add_mount(
        json!({"destination": "/mnt/p", "type": "bind", "source": "/proc", "options": ["bind"], "uidMappings": maps, "gidMappings": maps}),
    );
    env.args(&["true"]);
    let n = env.config["mounts"].as_array().unwrap().len() - 1;
    assert_fails_mentioning(&env.create(), &[&format!("mounts[{n}]"), "/mnt/p", "does not support idmapped mounts"]);
    assert_no_leftovers(&env);
    // and a mapping on a mount that is not a bind is refused by name
    let mut env = TestEnv::new("idmap-tmpfs");
    env.add_mount(json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "uidMappings": maps, "gidMappings": maps}));
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["uidMappings", "bind"]);
    assert_no_leftovers(&env);
}

// --- hooks ---

#[test]
fn hooks_run_in_listed_order_with_their_own_args_and_env() {
    if !require_root() {
        return;
    }
    let dir = host_tempdir("hull-hook-order-");
    let log = dir.path().join("log");
    let l = log.to_str().unwrap();
    let hook = |n: u32| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$0 {n} $H\" >> {l}"), format!("arg0-{n}")],
               "env": [format!("H=env{n}")], "timeout": 5})
    };
    let mut env = TestEnv::new("hook-list-order");
    env.config["hooks"] = json!({"createRuntime": [hook(1), hook(2), hook(3)]});
    env.args(&["true"]);
    assert_ok(&env.run_fg());
    assert_eq!(fs::read_to_string(&log).unwrap(), "arg0-1 1 env1\narg0-2 2 env2\narg0-3 3 env3\n");
}

#[test]
fn failing_poststart_and_poststop_hooks_warn_and_continue() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("hook-late-fail");
    env.config["hooks"] = json!({
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo poststart-fails >&2; exit 7"]}],
        "poststop": [{"path": "/bin/false"}]
    });
    env.args(&["sleep", "1000"]);
    env.create_ok();
    let o = env.start();
    assert_ok(&o);
    assert!(s(&o.stderr).contains("level=warning") && s(&o.stderr).contains("poststart"), "{}", show(&o));
    assert_eq!(env.status().as_deref(), Some("running"));
    let o = env.run(&["delete", "--force", &env.id]);
    assert_ok(&o);
    assert!(s(&o.stderr).contains("poststop"), "{}", show(&o));
    assert_no_leftovers(&env);
}

#[test]
fn failing_create_container_or_start_container_hook_fails_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("hook-cc-fail");
    env.config["hooks"] = json!({"createContainer": [{"path": "/bin/false"}]});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["createContainer"]);
    assert_no_leftovers(&env);

    let mut env = TestEnv::new("hook-sc-fail");
    env.config["hooks"] = json!({"startContainer": [{"path": "/bin/false"}]});
    env.args(&["sleep", "1000"]);
    env.create_ok();
    assert_fails(&env.start());
    // the container is stopped: the program never ran
    env.wait_status("stopped");
    assert_ok(&env.delete());
    assert_no_leftovers(&env);
}

// --- capabilities and LSMs ---

#[test]
fn unknown_capabilities_are_ignored_with_a_warning() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("caps-unknown");
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_FROM_THE_FUTURE"));
    }
    env.sh("grep CapEff /proc/self/status");
    let o = env.run_fg();
    assert_ok(&o);
    assert!(s(&o.stderr).contains("CAP_FROM_THE_FUTURE") && s(&o.stderr).contains("level=warning"), "{}", show(&o));
}

#[test]
fn a_capability_the_runtime_lacks_is_an_error_naming_it() {
    if !require_root() {
        return;
    }
    // Which capability does this host withhold from us?
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let prm = status.lines().find_map(|l| l.strip_prefix("CapPrm:")).unwrap().trim();
    let prm = u64::from_str_radix(prm, 16).unwrap();
    let names = [(24, "CAP_SYS_RESOURCE"), (25, "CAP_SYS_TIME"), (16, "CAP_SYS_MODULE")];
    let Some((_, missing)) = names.iter().find(|(bit, _)| prm & (1 << bit) == 0) else {
        eprintln!("skipped: this host grants every capability tried, none to be refused");
        return;
    };
    let mut env = TestEnv::new("caps-ungrantable");
    for set in ["effective", "permitted"] {
        env.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!(missing));
    }
    env.args(&["true"]);
    // refused by create, before anything runs
    let o = env.create();
    assert_fails_mentioning(&o, &[missing]);
    assert_no_leftovers(&env);
}

#[test]
fn selinux_labels_without_selinux_are_a_warning() {
    if !require_root() {
        return;
    }
    if Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!("skipped: this host has SELinux (labels are applied, not ignored)");
        return;
    }
    let mut env = TestEnv::new("selinux-none");
    env.config["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    env.config["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    env.sh("echo ran");
    let o = env.run_fg();
    assert_ok(&o);
    assert_eq!(s(&o.stdout).trim(), "ran");
    assert!(s(&o.stderr).contains("selinuxLabel") && s(&o.stderr).contains("level=warning"), "{}", show(&o));
}

#[test]
fn intel_rdt_is_refused_by_name() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("intel-rdt");
    env.config["linux"]["intelRdt"] = json!({"l3CacheSchema": "L3:0=ff"});
    env.args(&["true"]);
    let o = env.create();
    assert_fails_mentioning(&o, &["linux.intelRdt"]);
    if !Path::new("/sys/fs/resctrl").exists() {
        assert!(s(&o.stderr).contains("resctrl"), "{}", show(&o));
    }
    assert_no_leftovers(&env);
}

// --- process and linux attributes of runtime-spec 1.2/1.3 ---

/// Fields of /proc/self/stat after the command name (index 0 = field 3).
fn stat_fields(stat: &str) -> Vec<String> {
    stat[stat.rfind(')').unwrap() + 2..].split_whitespace().map(String::from).collect()
}

#[test]
fn scheduler_policy_nice_and_priority_are_applied() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("sched-batch");
    env.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    env.args(&["cat", "/proc/self/stat"]);
    let f = stat_fields(&env.output_ok());
    assert_eq!((f[16].as_str(), f[38].as_str()), ("7", "3"), "nice and policy (SCHED_BATCH = 3)");
    let mut env = TestEnv::new("sched-fifo");
    env.config["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 12, "flags": ["SCHED_RESET_ON_FORK"]});
    // With RT group scheduling (cgroup v1's cpu.rt_runtime_us) a cgroup
    // needs real-time runtime of its own for SCHED_FIFO.
    if Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        env.config["linux"]["resources"]["cpu"] = json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
    }
    // reset-on-fork: the forked cat is back to SCHED_OTHER; the shell itself is FIFO
    env.sh("cat /proc/$$/stat; echo; cat /proc/self/stat; true");
    let out = env.output_ok();
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let shell = stat_fields(lines.next().unwrap());
    let child = stat_fields(lines.next().unwrap());
    assert_eq!((shell[37].as_str(), shell[38].as_str()), ("12", "1"), "rt priority and policy (SCHED_FIFO = 1)");
    assert_eq!(child[38], "0", "SCHED_RESET_ON_FORK");
    let mut env = TestEnv::new("sched-bad");
    env.config["process"]["scheduler"] = json!({"policy": "SCHED_OTHER", "priority": 5});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["process.scheduler.priority"]);
    assert_no_leftovers(&env);
}

#[test]
fn io_priority_is_applied() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ioprio");
    env.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    env.args(&["ionice"]);
    let out = env.output_ok();
    assert!(out.contains("best-effort") && out.contains('6'), "{out}");
    let mut env = TestEnv::new("ioprio-idle");
    env.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    env.args(&["ionice"]);
    assert!(env.output_ok().contains("idle"));
    let mut env = TestEnv::new("ioprio-bad");
    env.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 9});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["process.ioPriority"]);
    assert_no_leftovers(&env);
}

#[test]
fn personality_linux32_is_applied() {
    if !require_root() {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipped: LINUX32 is checked through uname -m on x86_64");
        return;
    }
    let mut env = TestEnv::new("personality");
    env.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    env.sh("uname -m; cat /proc/self/personality");
    let out = env.output_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "i686", "{out}");
    assert_eq!(lines[1], "00000008", "{out}");
    let mut env = TestEnv::new("personality-plain");
    env.config["linux"]["personality"] = json!({"domain": "LINUX"});
    env.args(&["uname", "-m"]);
    assert_eq!(env.output_ok().trim(), "x86_64");
}

#[test]
fn time_offsets_in_a_new_time_namespace_also_for_exec() {
    if !require_root() {
        return;
    }
    if !Path::new("/proc/self/timens_offsets").exists() {
        eprintln!("skipped: the kernel has no time namespaces");
        return;
    }
    let host_uptime: f64 = fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let mut env = TestEnv::new("timens");
    env.set_namespace("time", None);
    env.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 8640000}, "monotonic": {"secs": 1000, "nanosecs": 5}});
    env.sh("cat /proc/self/timens_offsets; cat /proc/uptime; sleep 1000");
    assert_ok(&env.run_detached());
    wait_for("container output", WAIT_TIMEOUT, || env.container_stdout().lines().count() >= 3);
    let out = env.container_stdout();
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(&words[..6], ["monotonic", "1000", "5", "boottime", "8640000", "0"], "{out}");
    let uptime = |text: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(|c: char| c.is_ascii_digit())).unwrap();
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(uptime(&out) >= host_uptime + 8640000.0 - 5.0, "{out} vs host {host_uptime}");
    let o = env.exec(&["cat", "/proc/uptime"]);
    assert_ok(&o);
    assert!(uptime(&s(&o.stdout)) >= host_uptime + 8640000.0 - 5.0, "exec: {}", show(&o));
    // offsets without a new time namespace are refused by name
    let mut env = TestEnv::new("timens-missing");
    env.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 1}});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["linux.timeOffsets"]);
    assert_no_leftovers(&env);
}

#[test]
fn memory_policy_is_set_and_bad_nodes_fail() {
    if !require_root() {
        return;
    }
    if !Path::new("/sys/devices/system/node/node0").exists() {
        eprintln!("skipped: no NUMA node 0 (kernel without NUMA)");
        return;
    }
    let mut env = TestEnv::new("mempolicy");
    env.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
    env.sh("echo ok");
    assert_eq!(env.output_ok().trim(), "ok");
    // a node this host does not have: the kernel refuses, create fails by name
    let mut env = TestEnv::new("mempolicy-missing-node");
    env.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "1000"});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["linux.memoryPolicy"]);
    assert_no_leftovers(&env);
    let mut env = TestEnv::new("mempolicy-no-nodes");
    env.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE"});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["linux.memoryPolicy.nodes"]);
    assert_no_leftovers(&env);
}

#[test]
fn exec_cpu_affinity_final_applies_to_exec_process() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("exec-affinity");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let mut process = env.config["process"].clone();
    process["args"] = json!(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"]);
    process["execCPUAffinity"] = json!({"initial": "0", "final": "0"});
    let p = env.bundle_path().join("process.json");
    fs::write(&p, process.to_string()).unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout).split_whitespace().last(), Some("0"), "{}", show(&o));
    // the exec'd process's own scheduler and I/O priority
    process["args"] = json!(["sh", "-c", "ionice; cat /proc/self/stat"]);
    process["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    process["scheduler"] = json!({"policy": "SCHED_IDLE"});
    fs::write(&p, process.to_string()).unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    let out = s(&o.stdout);
    assert!(out.lines().next().unwrap_or_default().contains("idle"), "{out}");
    let stat = out.lines().nth(1).unwrap_or_default();
    assert_eq!(stat_fields(stat)[38], "5", "SCHED_IDLE = 5: {out}");
    process.as_object_mut().unwrap().remove("ioPriority");
    process.as_object_mut().unwrap().remove("scheduler");
    process["execCPUAffinity"] = json!({"final": "0-99999"});
    fs::write(&p, process.to_string()).unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_fails_mentioning(&o, &["execCPUAffinity.final"]);
}

/// execCPUAffinity.initial alone: the exec'd process keeps the affinity set
/// before it joined the container's cgroup. Observable since Linux 6.2,
/// which keeps a task's requested affinity when a cpuset attach changes
/// its CPUs (before that a cpuset join reset it to the cpuset's CPUs).
#[test]
fn exec_cpu_affinity_initial_is_kept_without_final() {
    if !require_root() {
        return;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release.trim().split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().unwrap_or(0));
    if (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 2) {
        eprintln!("skipped: kernel {} resets the affinity on a cpuset join (6.2+ keeps it)", release.trim());
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let mut env = TestEnv::new("exec-affinity-initial");
    env.args(&["sleep", "1000"]);
    env.start_running();
    let mut process = env.config["process"].clone();
    process["args"] = json!(["sh", "-c", "grep Cpus_allowed_list /proc/self/status"]);
    process["execCPUAffinity"] = json!({"initial": "1"});
    let p = env.bundle_path().join("process.json");
    fs::write(&p, process.to_string()).unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout).split_whitespace().last(), Some("1"), "{}", show(&o));
    // final, set after the cgroup join, wins over initial
    process["execCPUAffinity"] = json!({"initial": "1", "final": "0"});
    fs::write(&p, process.to_string()).unwrap();
    let o = env.run(&["exec", "--process", p.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout).split_whitespace().last(), Some("0"), "{}", show(&o));
}

// --- seccomp user notification ---

/// What a seccomp agent got: the message and where the fd pointed.
struct AgentGot {
    message: Value,
    fd_link: String,
}

/// A seccomp agent that accepts one connection and hands back the message
/// and the notification fd it carried, never reading a notification.
fn holding_agent(path: &Path) -> std::thread::JoinHandle<(Value, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let (n, fds) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
            let mut fds = Vec::new();
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            (msg.bytes, fds)
        };
        assert_eq!(fds.len(), 1, "one fd expected");
        // SAFETY (test): the fd just arrived with SCM_RIGHTS and is ours.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        (serde_json::from_slice(&buf[..n]).unwrap(), fd)
    })
}

/// A one-shot seccomp agent: receives the message and its fd, then closes
/// the fd (the notified syscalls then fail with ENOSYS, which the
/// container sees).
fn one_shot_agent(path: &Path) -> std::thread::JoinHandle<AgentGot> {
    use std::os::fd::AsRawFd;
    let held = holding_agent(path);
    std::thread::spawn(move || {
        let (message, fd) = held.join().unwrap();
        let fd_link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().display().to_string();
        AgentGot { message, fd_link }
    })
}

#[test]
fn seccomp_notify_fd_goes_to_the_listener_with_the_state() {
    if !require_root() {
        return;
    }
    let dir = host_tempdir("hull-seccomp-agent-");
    let sock = dir.path().join("agent.sock");
    let agent = one_shot_agent(&sock);
    let mut env = TestEnv::new("seccomp-notify");
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock.to_str().unwrap(),
        "listenerMetadata": "hull-test-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    env.writable_tmp();
    env.sh("mkdir /tmp/notified 2>&1; echo mkdir-rc=$?");
    env.create_ok();
    let pid = env.pid();
    env.start_ok();
    let got = agent.join().unwrap();
    assert_eq!(got.fd_link, "anon_inode:seccomp notify");
    let m = &got.message;
    assert_eq!(m["fds"], json!(["seccompFd"]), "{m}");
    assert_eq!(m["pid"], json!(pid), "{m}");
    assert_eq!(m["metadata"], "hull-test-metadata", "{m}");
    assert_eq!(m["state"]["id"], json!(env.id), "{m}");
    assert_eq!(m["state"]["pid"], json!(pid), "{m}");
    assert!(m["ociVersion"].is_string() && m["state"]["status"].is_string(), "{m}");
    // the agent dropped the fd: the notified mkdir fails with ENOSYS
    env.wait_status("stopped");
    let out = env.container_stdout();
    assert!(out.contains("mkdir-rc=1") && out.contains("not implemented"), "{out}");
}

/// Receive one notification on a seccomp notify fd (SECCOMP_IOCTL_NOTIF_RECV)
/// and leave it unanswered; false if none came within a minute.
fn receive_notification(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    let mut pfd = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
    if nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(60_000u16)).unwrap_or(0) != 1 {
        return false;
    }
    // struct seccomp_notif: id, pid, flags, struct seccomp_data (80 bytes),
    // zeroed as the kernel wants; _IOWR('!', 0, struct seccomp_notif).
    let mut notif = [0u8; 80];
    const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xC050_2100;
    // SAFETY (test): the kernel writes at most the 80 bytes of `notif`.
    unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, notif.as_mut_ptr()) == 0 }
}

/// With SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV a task whose notification
/// the agent has received waits for the answer through any non-fatal
/// signal (state D); without the flag the signal interrupts the wait.
#[test]
fn seccomp_wait_killable_recv_makes_a_received_notification_wait_killable() {
    if !require_root() {
        return;
    }
    let flag = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";
    let env = TestEnv::new("seccomp-features");
    let f: Value = serde_json::from_slice(&env.run(&["features"]).stdout).unwrap();
    if !f["linux"]["seccomp"]["supportedFlags"].as_array().unwrap().iter().any(|x| x == flag) {
        eprintln!("skipped: this kernel has no {flag} (Linux 5.19+)");
        return;
    }
    for (flags, want) in [(json!([flag]), "D"), (json!([]), "T")] {
        let dir = host_tempdir("hull-seccomp-killable-");
        let sock = dir.path().join("agent.sock");
        let agent = holding_agent(&sock);
        let mut env = TestEnv::new("seccomp-killable");
        env.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock.to_str().unwrap(),
            "flags": flags,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        env.writable_tmp();
        env.args(&["mkdir", "/tmp/notified"]);
        env.create_ok();
        let pid = env.pid();
        env.start_ok();
        let (_, fd) = agent.join().unwrap();
        assert!(receive_notification(&fd), "no notification within a minute");
        wait_for("mkdir waiting for the agent", std::time::Duration::from_secs(60), || {
            fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("seccomp"))
        });
        // A non-fatal signal (SIGSTOP, which reaches a pid namespace's init
        // from outside) interrupts the wait and stops the task (T) without
        // the flag; with it the task goes on waiting, killably (D).
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).unwrap();
        let state = || {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| stat_fields(&s)[0].clone())
                .unwrap_or_default()
        };
        wait_for("the signal to be handled", std::time::Duration::from_secs(60), || matches!(state().as_str(), "D" | "T" | "t"));
        assert_eq!(state(), want, "flags {flags}");
        drop(fd);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        env.wait_status("stopped");
    }
}

#[test]
fn seccomp_notify_with_no_listener_fails_create_cleanly() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("seccomp-notify-nolistener");
    env.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/tmp/hull-no-such-agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["listenerPath"]);
    assert_no_leftovers(&env);
}

// --- linux.netDevices ---

/// One end of a veth pair on the host, with an address; deleted (with its
/// peer) on drop. (A veth, not a dummy: not every kernel has dummy.)
struct Dummy(String);

impl Dummy {
    fn new(tag: &str, addr: &str) -> Dummy {
        let name = format!("hd{}{tag}", std::process::id() % 100000);
        let peer = format!("{name}p");
        assert_ok(&host("ip", &["link", "add", &name, "type", "veth", "peer", "name", &peer]));
        let d = Dummy(name);
        assert_ok(&host("ip", &["addr", "add", addr, "dev", &d.0]));
        assert_ok(&host("ip", &["link", "set", "dev", &d.0, "up"]));
        d
    }
}

impl Drop for Dummy {
    fn drop(&mut self) {
        let _ = run_cmd(Command::new("ip").args(["link", "del", &self.0]), CMD_TIMEOUT);
    }
}

#[test]
fn net_devices_move_in_renamed_and_back_on_delete() {
    if !require_root() {
        return;
    }
    let dummy = Dummy::new("a", "10.251.77.1/24");
    let mut env = TestEnv::new("netdev");
    env.config["linux"]["netDevices"] = json!({ dummy.0.clone(): {"name": "ctr7"} });
    env.sh("cat /sys/class/net/ctr7/flags; grep -c 10.251.77.1 /proc/net/fib_trie; test -e /sys/class/net/$HOSTDEV || echo host-name-gone; sleep 1000");
    env.config["process"]["env"].as_array_mut().unwrap().push(json!(format!("HOSTDEV={}", dummy.0)));
    assert_ok(&env.run_detached());
    wait_for("container output", WAIT_TIMEOUT, || env.container_stdout().contains("host-name-gone"));
    let out = env.container_stdout();
    let lines: Vec<&str> = out.lines().collect();
    let flags = u32::from_str_radix(lines[0].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "renamed and up (IFF_UP): {out}");
    assert_ne!(lines[1], "0", "the address came along: {out}");
    assert!(!Path::new("/sys/class/net").join(&dummy.0).exists(), "still on the host");
    // back on the host under its own name, with its address, after delete
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    let o = host("ip", &["-j", "addr", "show", "dev", &dummy.0]);
    assert_ok(&o);
    assert!(s(&o.stdout).contains("10.251.77.1"), "{}", show(&o));
    assert_no_leftovers(&env);
}

#[test]
fn net_devices_need_a_network_namespace_and_an_existing_interface() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("netdev-missing");
    env.config["linux"]["netDevices"] = json!({"hull-no-such0": {}});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["linux.netDevices.hull-no-such0"]);
    assert_no_leftovers(&env);
    let dummy = Dummy::new("b", "10.251.78.1/24");
    let mut env = TestEnv::new("netdev-hostns");
    env.drop_namespace("network");
    env.config["linux"]["netDevices"] = json!({ dummy.0.clone(): {} });
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["linux.netDevices"]);
    assert_no_leftovers(&env);
    assert!(Path::new("/sys/class/net").join(&dummy.0).exists());
}

#[test]
fn net_devices_go_back_when_create_fails_later() {
    if !require_root() {
        return;
    }
    let dummy = Dummy::new("c", "10.251.79.1/24");
    let mut env = TestEnv::new("netdev-rollback");
    env.config["linux"]["netDevices"] = json!({ dummy.0.clone(): {"name": "ctr8"} });
    env.config["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    env.args(&["true"]);
    assert_fails_mentioning(&env.create(), &["createRuntime"]);
    let o = host("ip", &["-j", "addr", "show", "dev", &dummy.0]);
    assert_ok(&o);
    assert!(s(&o.stdout).contains("10.251.79.1"), "{}", show(&o));
    assert_no_leftovers(&env);
}

#[test]
fn features_report_what_is_implemented() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("features");
    let o = env.run(&["features"]);
    assert_ok(&o);
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    let has = |v: &Value, x: &str| v.as_array().unwrap().iter().any(|e| e == x);
    for opt in ["rro", "rrw", "rnoatime", "rnosymfollow", "rstrictatime", "rbind", "rshared", "unbindable"] {
        assert!(has(&f["mountOptions"], opt), "mountOptions lacks {opt}");
    }
    assert!(has(&f["linux"]["namespaces"], "time"));
    assert!(has(&f["linux"]["seccomp"]["actions"], "SCMP_ACT_NOTIFY"));
    assert_eq!(f["linux"]["netDevices"]["enabled"], true);
    assert!(has(&f["linux"]["memoryPolicy"]["modes"], "MPOL_BIND"));
    assert!(has(&f["linux"]["memoryPolicy"]["flags"], "MPOL_F_STATIC_NODES"));
    // what is refused is not claimed
    assert_eq!(f["linux"]["intelRdt"]["enabled"], false);
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    assert!(has(&f["mountOptions"], "idmap") && has(&f["mountOptions"], "ridmap"));
    assert!(!has(&f["mountOptions"], "tmpcopyup"));
    let ann = f["annotations"].to_string();
    assert!(ann.contains("scheduler") && ann.contains("ioPriority") && ann.contains("timeOffsets"), "{ann}");
}
