//! The container's filesystem: config mounts and their options, binds,
//! tmpfs, masked and read-only paths, readonly root, /dev, devices,
//! --no-pivot, propagation.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
#[allow(dead_code)]
struct MountLine {
    root: String,
    point: String,
    opts: Vec<String>,
    optional: Vec<String>,
    fstype: String,
    source: String,
    super_opts: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountLine {
                root: f.get(3)?.to_string(),
                point: f.get(4)?.to_string(),
                opts: f.get(5)?.split(',').map(String::from).collect(),
                optional: f[6..].iter().map(|s| s.to_string()).collect(),
                fstype: p.first()?.to_string(),
                source: p.get(1).unwrap_or(&"").to_string(),
                super_opts: p.get(2).unwrap_or(&"").split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// The last (topmost) mount at `point`.
fn mount_at<'a>(mounts: &'a [MountLine], point: &str) -> &'a MountLine {
    mounts
        .iter()
        .rev()
        .find(|m| m.point == point)
        .unwrap_or_else(|| panic!("no mount at {} in {:#?}", point, mounts))
}

fn has(m: &MountLine, opt: &str) -> bool {
    m.opts.iter().any(|o| o == opt)
}

fn container_mountinfo(env: &mut TestEnv) -> Vec<MountLine> {
    env.args(&["cat", "/proc/self/mountinfo"]);
    parse_mountinfo(&env.output_ok())
}

#[test]
fn default_spec_mounts_and_options() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("default-mounts");
    let mi = container_mountinfo(&mut env);

    let root = mount_at(&mi, "/");
    assert!(has(root, "ro"), "root.readonly: {:?}", root);

    let proc_ = mount_at(&mi, "/proc");
    assert_eq!(proc_.fstype, "proc");

    let dev = mount_at(&mi, "/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(has(dev, "nosuid"), "{:?}", dev);
    assert!(dev.super_opts.iter().any(|o| o == "size=65536k"), "{:?}", dev);
    assert!(dev.super_opts.iter().any(|o| o == "mode=755"), "{:?}", dev);

    let pts = mount_at(&mi, "/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(has(pts, "nosuid") && has(pts, "noexec"), "{:?}", pts);
    assert!(pts.super_opts.iter().any(|o| o == "ptmxmode=666"), "{:?}", pts);
    assert!(pts.super_opts.iter().any(|o| o == "gid=5"), "{:?}", pts);

    let shm = mount_at(&mi, "/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(has(shm, o), "{} on /dev/shm: {:?}", o, shm);
    }

    let mq = mount_at(&mi, "/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");

    let sys = mount_at(&mi, "/sys");
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "noexec", "nodev"] {
        assert!(has(sys, o), "{} on /sys: {:?}", o, sys);
    }

    // cgroup v1 host: /sys/fs/cgroup is a tmpfs with one read-only cgroup
    // mount per hierarchy, each showing only the container's own cgroup
    let cg: Vec<&MountLine> = mi.iter().filter(|m| m.point.starts_with("/sys/fs/cgroup/") && m.fstype == "cgroup").collect();
    assert!(!cg.is_empty(), "no cgroup mounts: {:#?}", mi);
    // In a cgroup namespace the container's cgroup is the root it sees.
    let own_cgroup_ns = env.config["linux"]["namespaces"].as_array().unwrap().iter().any(|n| n["type"] == "cgroup");
    for m in &cg {
        assert!(has(m, "ro"), "{:?}", m);
        if own_cgroup_ns {
            assert_eq!(m.root, "/", "cgroup mount root in a cgroup namespace: {:?}", m);
        } else {
            assert!(m.root.ends_with(&env.id), "cgroup mount root should be the container's cgroup: {:?}", m);
        }
    }
}

#[test]
fn mount_options_ro_nosuid_nodev_noexec_are_applied() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("mount-opts");
    env.add_mount(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["ro", "nosuid", "nodev", "noexec"]
    }));
    env.sh("cat /proc/self/mountinfo; touch /tmp/x 2>/dev/null && echo WRITABLE || echo READONLY");
    let out = env.output_ok();
    let mi = parse_mountinfo(&out);
    let m = mount_at(&mi, "/tmp");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(has(m, o), "{} missing: {:?}", o, m);
    }
    assert!(out.ends_with("READONLY\n"), "{}", out);
}

#[test]
fn noexec_mount_prevents_exec() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("noexec");
    env.add_mount(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "mode=1777"]
    }));
    env.sh("cp /bin/busybox /tmp/bb && /tmp/bb true && echo RAN || echo DENIED");
    assert_eq!(env.output_ok(), "DENIED\n");
}

#[test]
fn bind_mount_host_dir_read_write() {
    if !require_root() {
        return;
    }
    let host = host_tempdir("hull-bind-");
    std::fs::write(host.path().join("from-host"), "host-data\n").unwrap();
    let mut env = TestEnv::new("bind-rw");
    env.bind(host.path(), "/tmp")
        .sh("cat /tmp/from-host; echo container-data > /tmp/from-container; grep ' /tmp ' /proc/self/mountinfo");
    let out = env.output_ok();
    assert!(out.starts_with("host-data\n"), "{}", out);
    assert_eq!(std::fs::read_to_string(host.path().join("from-container")).unwrap(), "container-data\n");
    let mi = parse_mountinfo(&out);
    let m = mount_at(&mi, "/tmp");
    assert!(has(m, "rw"), "{:?}", m);
    assert_no_leftovers(&env);
}

#[test]
fn bind_mount_read_only() {
    if !require_root() {
        return;
    }
    let host = host_tempdir("hull-bindro-");
    std::fs::write(host.path().join("f"), "ro-data\n").unwrap();
    let mut env = TestEnv::new("bind-ro");
    env.add_mount(json!({
        "destination": "/tmp", "type": "bind", "source": host.path().to_str().unwrap(),
        "options": ["rbind", "ro"]
    }));
    env.sh("cat /tmp/f; echo x > /tmp/g 2>/dev/null && echo WROTE || echo DENIED");
    assert_eq!(env.output_ok(), "ro-data\nDENIED\n");
    assert!(!host.path().join("g").exists());
}

#[test]
fn bind_mount_single_file() {
    if !require_root() {
        return;
    }
    let host = host_tempdir("hull-bindfile-");
    let f = host.path().join("passwd");
    std::fs::write(&f, "root:x:0:0:bound:/root:/bin/sh\n").unwrap();
    let mut env = TestEnv::new("bind-file");
    env.add_mount(json!({
        "destination": "/etc/passwd", "type": "bind", "source": f.to_str().unwrap(),
        "options": ["bind", "ro"]
    }));
    env.args(&["cat", "/etc/passwd"]);
    assert_eq!(env.output_ok(), "root:x:0:0:bound:/root:/bin/sh\n");
}

#[test]
fn nested_mount_destination_is_created() {
    if !require_root() {
        return;
    }
    // the destination /tmp/a/b does not exist: it is created inside the
    // tmpfs mounted at /tmp before the bind
    let host = host_tempdir("hull-nested-");
    std::fs::write(host.path().join("f"), "nested\n").unwrap();
    let mut env = TestEnv::new("nested-dest");
    env.writable_tmp().bind(host.path(), "/tmp/a/b");
    env.args(&["cat", "/tmp/a/b/f"]);
    assert_eq!(env.output_ok(), "nested\n");
}

#[test]
fn tmpfs_with_size_and_mode() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("tmpfs-size");
    env.add_mount(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "size=1m", "mode=0750"]
    }));
    env.sh("grep ' /tmp ' /proc/self/mountinfo; stat -c %a /tmp; \
         dd if=/dev/zero of=/tmp/big bs=1k count=2048 2>/dev/null && echo FIT || echo FULL");
    let out = env.output_ok();
    let mi = parse_mountinfo(&out);
    let m = mount_at(&mi, "/tmp");
    assert_eq!(m.fstype, "tmpfs");
    assert!(m.super_opts.iter().any(|o| o == "size=1024k"), "{:?}", m);
    assert!(m.super_opts.iter().any(|o| o == "mode=750"), "{:?}", m);
    let lines: Vec<&str> = out.lines().collect();
    // runc quirk, kept by hull: when the destination directory already
    // exists, the tmpfs root gets chmod'ed to the directory's original mode
    // after mounting, so mountinfo says mode=750 but the directory shows the
    // rootfs /tmp's mode (1777).
    use std::os::unix::fs::PermissionsExt;
    let orig = std::fs::metadata(rootfs().join("tmp")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(lines[lines.len() - 2], format!("{:o}", orig), "{}", out);
    assert_eq!(lines[lines.len() - 1], "FULL", "{}", out);
}

#[test]
fn masked_paths_hide_content() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("masked");
    // default spec masks files (/proc/keys, /proc/timer_list: /dev/null
    // bound over them) and directories (/proc/acpi, /sys/firmware: empty
    // read-only tmpfs); add a file and a directory of the rootfs too
    let masked = env.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/etc/group"));
    masked.push(json!("/home"));
    masked.push(json!("/does/not/exist"));
    env.sh("echo keys=$(wc -c < /proc/keys); echo group=$(wc -c < /etc/group); \
         echo acpi=$(ls -A /proc/acpi | wc -l); echo firmware=$(ls -A /sys/firmware | wc -l); \
         echo home=$(ls -A /home | wc -l); touch /home/x 2>/dev/null && echo home-writable || echo home-ro");
    let out = env.output_ok();
    for want in ["keys=0", "group=0", "acpi=0", "firmware=0", "home=0", "home-ro"] {
        assert!(out.lines().any(|l| l == want), "expected {:?} in:\n{}", want, out);
    }
    // sanity: the host does have content there
    assert!(!std::fs::read_to_string(rootfs().join("etc/group")).unwrap().is_empty());
}

#[test]
fn readonly_paths_cannot_be_written() {
    if !require_root() {
        return;
    }
    // CAP_SYS_ADMIN in a new UTS namespace may write kernel.hostname; the
    // read-only /proc/sys mount is what must stop it.
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]);
    let mut env = TestEnv::new("ro-paths");
    env.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    env.sh("echo changed > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE || echo DENIED; grep ' /proc/sys ' /proc/self/mountinfo");
    let out = env.output_ok();
    assert!(out.starts_with("DENIED\n"), "{}", out);
    let mi = parse_mountinfo(&out);
    assert!(has(mount_at(&mi, "/proc/sys"), "ro"));

    // control: without readonlyPaths the same write works
    let mut env = TestEnv::new("ro-paths-none");
    env.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    env.config["linux"]["readonlyPaths"] = json!([]);
    env.sh("echo changed > /proc/sys/kernel/hostname && hostname");
    assert_eq!(env.output_ok(), "changed\n");
}

#[test]
fn readonly_root() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("ro-root");
    env.sh("touch /hull-ro-test 2>&1; echo rc=$?");
    let out = env.output_ok();
    assert!(out.contains("Read-only file system"), "{}", out);
    assert!(out.ends_with("rc=1\n"), "{}", out);
    assert!(!rootfs().join("hull-ro-test").exists());
}

#[test]
fn writable_root_when_not_readonly() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("rw-root");
    env.config["root"]["readonly"] = json!(false);
    let mi = container_mountinfo(&mut env);
    let root = mount_at(&mi, "/");
    assert!(has(root, "rw"), "{:?}", root);
}

#[test]
fn default_devices() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("devices");
    env.sh("for d in null zero full random urandom tty; do stat -c \"$d %F %t:%T %a\" /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo \"$l -> $(readlink /dev/$l)\"; done; \
         echo hi > /dev/null && echo null-ok; \
         head -c 3 /dev/zero | od -An -tx1; \
         echo x > /dev/full 2>/dev/null || echo full-enospc; \
         head -c 8 /dev/urandom | wc -c");
    let out = env.output_ok();
    for (name, maj, min) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        let want = format!("{} character special file {:x}:{:x} 666", name, maj, min);
        assert!(out.lines().any(|l| l == want), "expected {:?} in:\n{}", want, out);
    }
    for want in [
        "fd -> /proc/self/fd",
        "stdin -> /proc/self/fd/0",
        "stdout -> /proc/self/fd/1",
        "stderr -> /proc/self/fd/2",
        "ptmx -> pts/ptmx",
        "null-ok",
        " 00 00 00",
        "full-enospc",
        "8",
    ] {
        assert!(out.lines().any(|l| l == want), "expected {:?} in:\n{}", want, out);
    }
}

#[test]
fn no_extra_host_devices() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-host-devs");
    env.args(&["ls", "-A", "/dev"]);
    let out = env.output_ok();
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    assert_eq!(
        names,
        vec!["fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"],
        "{}",
        out
    );
}

#[test]
fn linux_devices_adds_node() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("add-device");
    env.config["linux"]["devices"] = json!([{
        "path": "/dev/hullnull", "type": "c", "major": 1, "minor": 3,
        "fileMode": 0o660, "uid": 1000, "gid": 0
    }]);
    env.config["linux"]["resources"]["devices"]
        .as_array_mut()
        .unwrap()
        .push(json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}));
    env.sh("stat -c '%F %t:%T %a %u %g' /dev/hullnull; echo data > /dev/hullnull && echo write-ok");
    assert_eq!(env.output_ok(), "character special file 1:3 660 1000 0\nwrite-ok\n");
}

#[test]
fn device_cgroup_denies_unlisted_device() {
    if !require_root() {
        return;
    }
    // a device node created without an allow rule exists but cannot be opened
    let mut env = TestEnv::new("device-denied");
    env.config["linux"]["devices"] = json!([{
        "path": "/dev/hullmem", "type": "c", "major": 1, "minor": 4, "fileMode": 0o666
    }]);
    env.sh("test -c /dev/hullmem && echo exists; cat /dev/hullmem >/dev/null 2>&1 && echo opened || echo denied");
    assert_eq!(env.output_ok(), "exists\ndenied\n");
}

#[test]
fn no_pivot_still_gives_container_root() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("no-pivot");
    env.sh("ls /bin/busybox && cat /etc/passwd | head -1 && grep -c . /proc/self/mountinfo >/dev/null && echo ok");
    env.write_config();
    let b = env.bundle_path();
    let o = env.run(&["run", "--no-pivot", "--bundle", b.to_str().unwrap(), &env.id]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "/bin/busybox\nroot:x:0:0:root:/root:/bin/sh\nok\n");
    assert_no_leftovers(&env);
}

#[test]
fn host_mounts_not_visible() {
    if !require_root() {
        return;
    }
    let mut env = TestEnv::new("host-mounts-hidden");
    let mi = container_mountinfo(&mut env);
    // after pivot_root the old root is gone: nothing outside the config's
    // mounts (plus masks / read-only paths / cgroup hierarchies)
    for m in &mi {
        assert!(
            m.point == "/" || m.point.starts_with("/proc") || m.point.starts_with("/dev") || m.point.starts_with("/sys"),
            "unexpected mount {:?}",
            m
        );
    }
}

#[test]
fn mount_propagation_rslave_receives_host_mounts() {
    if !require_root() {
        return;
    }
    // host: D is a shared mount; container binds D with rslave; a mount
    // made on the host under D after start shows up in the container.
    let host = host_tempdir("hull-prop-");
    let d = host.path().to_str().unwrap().to_string();
    std::fs::create_dir(host.path().join("sub")).unwrap();
    let sh = |c: &str| {
        let o = run_cmd(Command::new("sh").arg("-c").arg(c), CMD_TIMEOUT);
        assert_ok(&o);
    };
    sh(&format!("mount --bind {d} {d} && mount --make-shared {d}"));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-R").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(d.clone());

    let mut env = TestEnv::new("propagation");
    env.config["linux"]["rootfsPropagation"] = json!("rslave");
    env.add_mount(json!({
        "destination": "/tmp", "type": "bind", "source": d,
        "options": ["rbind", "rslave"]
    }));
    env.sh("i=0; while [ ! -e /tmp/sub/marker ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/sub/marker");
    env.start_running();
    sh(&format!("mount -t tmpfs tmpfs {d}/sub && echo propagated > {d}/sub/marker"));
    env.wait_status("stopped");
    assert_eq!(env.container_stdout(), "propagated\n");
}
