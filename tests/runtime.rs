//! The runtime layer driven directly from this (multi-threaded) test
//! harness: sandboxes and containers by id, create-then-start, stop
//! escalation, exec_sync, idempotent removal, events, and many sandboxes at
//! once from threads with nothing left behind.

mod common;

use common::{memory_cgroup, open_fds, parent_pid, require_root, rootfs, settled_fds, unique_id, wait_for};
use hull::runtime::*;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A runtime on its own state and run directories (removed on drop, after
/// every sandbox it made is removed).
struct Rt {
    rt: Arc<Runtime>,
    opts: RuntimeOptions,
    dir: tempfile::TempDir,
}

impl Rt {
    fn new() -> Rt {
        let dir = tempfile::Builder::new().prefix("hull-rt").tempdir_in("/tmp").unwrap();
        let opts = common::runtime_options(dir.path());
        Rt { rt: Arc::new(Runtime::open(opts.clone()).unwrap()), opts, dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        for s in self.rt.list_sandboxes(&SandboxFilter::default()).unwrap_or_default() {
            let _ = self.rt.remove_sandbox(&s.id);
        }
    }
}

fn sandbox_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: unique_id(name).replace('_', "-").to_lowercase(),
            namespace: "rt-test".into(),
            uid: unique_id("uid"),
            attempt: 0,
        },
        ..Default::default()
    }
}

fn container_config(name: &str, script: &str) -> ContainerConfig {
    let mut c = ContainerConfig {
        metadata: ContainerMetadata { name: name.into(), attempt: 0 },
        image: ImageSpec { image: rootfs().display().to_string() },
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    c.security_context.readonly_rootfs = true;
    c
}

fn with_dir_mount(mut c: ContainerConfig, host: &Path, at: &str) -> ContainerConfig {
    c.mounts.push(Mount { container_path: at.into(), host_path: host.into(), ..Default::default() });
    c
}

fn log_text(st: &ContainerStatus) -> String {
    let text = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    text.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect::<Vec<_>>().join("\n")
}

/// What of a runtime is still on the host: mounts under its dirs, the
/// holders and monitors given, pod cgroups.
fn leftovers(root: &Path, pids: &[i32], cgroups: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let root_s = root.to_str().unwrap();
    for l in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        if l.contains(root_s) {
            out.push(format!("mount: {l}"));
        }
    }
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !stat.is_empty() && !stat.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')) {
            out.push(format!("process {pid}: {stat}"));
        }
    }
    for cg in cgroups {
        for base in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = base.path().join(cg.trim_start_matches('/'));
            if p.exists() {
                out.push(format!("cgroup: {}", p.display()));
            }
        }
    }
    out
}

#[test]
fn sandbox_with_two_containers_created_then_started() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let events = rt.subscribe().unwrap();
    let sb = rt.create_sandbox(&sandbox_config("two")).unwrap();
    let st = rt.sandbox_status(&sb).unwrap();
    assert_eq!(st.state, SandboxState::Ready);
    let holder = st.holder_pid.expect("a holder");
    // The holder lives in the pod cgroup, in its own leaf named by the
    // sandbox id (containerd's place for pause), in every hierarchy.
    let holder_cg = format!("{}/{}", st.cgroup_parent, sb.as_str());
    let lines = std::fs::read_to_string(format!("/proc/{holder}/cgroup")).unwrap();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut checked = 0;
    for l in lines.lines() {
        let mut f = l.splitn(3, ':').skip(1);
        let (ctrls, path) = (f.next().unwrap(), f.next().unwrap());
        // On a hybrid host the empty cgroup2 mount ("0::") is not hull's.
        if v2 || !ctrls.is_empty() {
            assert_eq!(path, holder_cg, "holder's cgroups:\n{lines}");
            checked += 1;
        }
    }
    assert!(checked > 0, "{lines}");
    let out = tempfile::tempdir_in(env.root()).unwrap();
    // The shell is pid 1 of its PID namespace: SIGTERM reaches it only
    // through a trap.
    let script = "trap 'exit 3' TERM; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; touch /out/$(hostname)-$C; sleep 30 & wait";
    let mut a = with_dir_mount(container_config("a", script), out.path(), "/out");
    a.envs.push(("C".into(), "a".into()));
    let mut b = with_dir_mount(container_config("b", script), out.path(), "/out");
    b.envs.push(("C".into(), "b".into()));
    let ca = rt.create_container(&sb, &a).unwrap();
    let cb = rt.create_container(&sb, &b).unwrap();
    // Created, not started: the command has not run.
    assert_eq!(rt.container_status(&ca).unwrap().state, ContainerState::Created);
    std::thread::sleep(Duration::from_millis(300));
    assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "a created container ran its command");
    rt.start_container(&ca).unwrap();
    rt.start_container(&cb).unwrap();
    let host = &st.metadata.name;
    for c in ["a", "b"] {
        let f = out.path().join(format!("{host}-{c}"));
        wait_for(&format!("{} written", f.display()), Duration::from_secs(10), || f.exists());
    }
    // A second start is refused as a precondition failure.
    assert_eq!(rt.start_container(&ca).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    let sa = rt.container_status(&ca).unwrap();
    let sbs = rt.container_status(&cb).unwrap();
    assert_eq!((sa.state, sbs.state), (ContainerState::Running, ContainerState::Running));
    let la = log_text(&sa);
    assert!(!la.is_empty(), "log of a: {:?}", sa.log_path);
    assert_eq!(la, log_text(&sbs), "the two share net and ipc namespaces");
    assert_eq!(la.lines().next().unwrap(), std::fs::read_link(format!("/proc/{holder}/ns/net")).unwrap().to_str().unwrap());
    // The name index refuses a duplicate, naming the holder.
    let e = rt.create_container(&sb, &a).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains(ca.as_str()), "{e}");
    assert_eq!(rt.find_container(&sb, "a", 0).unwrap(), Some(ca.clone()));
    let listed = rt.list_containers(&ContainerFilter { sandbox_id: Some(sb.clone()), ..Default::default() }).unwrap();
    assert_eq!(listed.len(), 2);
    let stats = rt.container_stats(&ca).unwrap();
    assert!(stats.memory_usage_bytes > 0 && stats.pids >= 1, "{stats:?}");
    rt.stop_container(&ca, Duration::from_secs(5)).unwrap();
    let sa = rt.container_status(&ca).unwrap();
    assert_eq!((sa.state, sa.exit_code), (ContainerState::Exited, Some(3)), "{sa:?}");
    rt.remove_container(&ca).unwrap();
    let kinds: Vec<(EventKind, Option<ContainerId>)> = std::iter::from_fn(|| events.next_timeout(Duration::from_secs(2)))
        .map(|e| (e.kind, e.container_id))
        .collect();
    let of_a: Vec<EventKind> = kinds.iter().filter(|(_, c)| c.as_ref() == Some(&ca)).map(|(k, _)| *k).collect();
    assert_eq!(of_a, [EventKind::Created, EventKind::Started, EventKind::Stopped, EventKind::Deleted], "{kinds:?}");
    assert!(kinds.contains(&(EventKind::Created, None)));
    let pids: Vec<i32> = vec![holder, sbs.pid.unwrap()];
    let cg = st.cgroup_parent.clone();
    rt.remove_sandbox(&sb).unwrap();
    wait_for("nothing left", Duration::from_secs(10), || leftovers(env.root(), &pids, std::slice::from_ref(&cg)).is_empty());
    assert!(rt.list_containers(&ContainerFilter::default()).unwrap().is_empty());
}

#[test]
fn an_exited_container_gives_back_its_mounts_and_cgroup_at_exit() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let sb = rt.create_sandbox(&sandbox_config("exit")).unwrap();
    let host = tempfile::tempdir_in(env.root()).unwrap();
    let mut cfg = with_dir_mount(
        container_config("brief", "until [ -e /in/go ]; do sleep 1; done; echo bye > /data/f; echo layer > /written; exit 4"),
        host.path(),
        "/in",
    );
    cfg.security_context.readonly_rootfs = false;
    cfg.mounts
        .push(Mount { container_path: "/data".into(), host_path: host.path().into(), ..Default::default() });
    let c = rt.create_container(&sb, &cfg).unwrap();
    rt.start_container(&c).unwrap();
    let pid = rt.container_status(&c).unwrap().pid.unwrap();
    let (line, hierarchy, _) = memory_cgroup(pid.into());
    let cg = Path::new(hierarchy).join(line.splitn(3, ':').nth(2).unwrap().trim_start_matches('/'));
    assert!(cg.is_dir(), "{}", cg.display());
    let cdir = env.opts.state_dir.join("containers").join(c.as_str());
    let mounted = || {
        let m = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        m.lines().filter(|l| l.contains(c.as_str())).map(String::from).collect::<Vec<_>>()
    };
    assert!(!mounted().is_empty(), "the running container's rootfs is mounted");
    std::fs::write(host.path().join("go"), "go\n").unwrap();
    // Its exit alone (no stop, no remove) gives back the mounts, the
    // cgroup and the OCI state; the record, the log and the writable
    // layer stay.
    wait_for("exit recorded", Duration::from_secs(10), || rt.container_status(&c).unwrap().state == ContainerState::Exited);
    wait_for("mounts and cgroup given back", Duration::from_secs(10), || mounted().is_empty() && !cg.exists());
    assert!(!env.opts.run_dir.join("oci").join(c.as_str()).exists());
    let st = rt.container_status(&c).unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(4)), "{st:?}");
    assert!(cdir.join("container.json").exists());
    assert!(rt.container_spec(&c).is_some_and(|s| s["process"]["args"][0] == "sh"));
    let (_, usage) = rt.writable_layer_usage(&c).expect("the writable layer stays");
    assert!(usage.bytes > 0 || usage.inodes > 0, "{usage:?}");
    assert_eq!(rt.container_stats(&c).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    assert_eq!(std::fs::read_to_string(host.path().join("f")).unwrap(), "bye\n");
    // Removal (twice) still works, and the sandbox forgets the container:
    // its listing file goes (behind the caller), the record's list at its
    // next save.
    rt.remove_container(&c).unwrap();
    rt.remove_container(&c).unwrap();
    assert!(!cdir.exists());
    let again = rt.create_container(&sb, &container_config("brief", "exit 0")).unwrap();
    let sdir = env.opts.state_dir.join("sandboxes").join(sb.as_str());
    let listed = || -> Vec<String> {
        std::fs::read_dir(sdir.join("listed"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    wait_for("the removed container's listing gone", Duration::from_secs(10), || listed() == [again.as_str()]);
    rt.stop_sandbox(&sb, Duration::ZERO).unwrap();
    let sbox: serde_json::Value = serde_json::from_slice(&std::fs::read(sdir.join("sandbox.json")).unwrap()).unwrap();
    assert_eq!(sbox["containers"], serde_json::json!([again.as_str()]), "{sbox}");
    rt.remove_sandbox(&sb).unwrap();
    assert!(leftovers(env.root(), &[pid], &[]).is_empty());
}

/// CVE-2019-5736 on the runtime layer's path: a created container's init
/// (a fork of its monitor, still hull until it execs the program) runs
/// from a read-only copy of hull, and the runtime exec'd the monitor from
/// that copy itself (its argv[0] is the copy's /proc/self/fd path), not
/// through a re-exec.
#[test]
fn a_created_containers_init_runs_from_a_read_only_hull() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let sb = rt.create_sandbox(&sandbox_config("guard")).unwrap();
    let c = rt.create_container(&sb, &container_config("held", "exit 0")).unwrap();
    let st = rt.container_status(&c).unwrap();
    assert_eq!(st.state, ContainerState::Created);
    let pid = st.pid.expect("a created container has its init");
    let exe = format!("/proc/{pid}/exe");
    let flags = nix::sys::statvfs::statvfs(exe.as_str()).unwrap().flags();
    assert!(flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY), "{exe} is on a writable mount ({flags:?})");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv0 = String::from_utf8_lossy(cmdline.split(|b| *b == 0).next().unwrap()).into_owned();
    assert!(argv0.starts_with("/proc/self/fd/"), "monitor exec'd as {argv0:?}");
    rt.remove_sandbox(&sb).unwrap();
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let sb = rt.create_sandbox(&sandbox_config("stop")).unwrap();
    let c = rt
        .create_container(&sb, &container_config("stubborn", "trap '' TERM; echo armed; while true; do sleep 1; done"))
        .unwrap();
    rt.start_container(&c).unwrap();
    wait_for("trap armed", Duration::from_secs(10), || log_text(&rt.container_status(&c).unwrap()).contains("armed"));
    let t = Instant::now();
    rt.stop_container(&c, Duration::from_millis(1500)).unwrap();
    let took = t.elapsed();
    let st = rt.container_status(&c).unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(137)), "{st:?}");
    assert!(took >= Duration::from_millis(1400) && took < Duration::from_secs(8), "took {took:?}");
    // Stop and remove are idempotent.
    rt.stop_container(&c, Duration::from_secs(1)).unwrap();
    rt.remove_container(&c).unwrap();
    rt.remove_container(&c).unwrap();
    rt.stop_container(&c, Duration::from_secs(1)).unwrap();
    assert_eq!(rt.container_status(&c).unwrap_err().kind(), ErrorKind::NotFound);
    // A created container that was never started stops at once.
    let c2 = rt.create_container(&sb, &container_config("never", "sleep 100")).unwrap();
    let t = Instant::now();
    rt.stop_container(&c2, Duration::from_secs(20)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(rt.container_status(&c2).unwrap().state, ContainerState::Exited);
    let holder = rt.sandbox_status(&sb).unwrap().holder_pid.unwrap();
    rt.stop_sandbox(&sb, Duration::from_secs(1)).unwrap();
    assert_eq!(rt.sandbox_status(&sb).unwrap().state, SandboxState::NotReady);
    rt.stop_sandbox(&sb, Duration::from_secs(1)).unwrap();
    // No new container in a stopped sandbox.
    assert_eq!(rt.create_container(&sb, &container_config("late", "true")).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    rt.remove_sandbox(&sb).unwrap();
    rt.remove_sandbox(&sb).unwrap();
    rt.stop_sandbox(&sb, Duration::from_secs(1)).unwrap();
    assert_eq!(rt.sandbox_status(&sb).unwrap_err().kind(), ErrorKind::NotFound);
    wait_for("holder gone", Duration::from_secs(5), || leftovers(env.root(), &[holder], &[]).is_empty());
}

#[test]
fn exec_sync_returns_output_and_kills_on_timeout() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let sb = rt.create_sandbox(&sandbox_config("exec")).unwrap();
    let c = rt.create_container(&sb, &container_config("c", "sleep 100")).unwrap();
    // Not running yet: refused.
    assert_eq!(rt.exec_sync(&c, &["true".into()], None).unwrap_err().kind(), ErrorKind::FailedPrecondition);
    rt.start_container(&c).unwrap();
    let r = rt
        .exec_sync(&c, &["sh".into(), "-c".into(), "echo out; echo err >&2; exit 3".into()], Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!((r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code), (&b"out\n"[..], &b"err\n"[..], 3));
    let t = Instant::now();
    let e = rt.exec_sync(&c, &["sleep".into(), "77".into()], Some(Duration::from_millis(800))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    assert!(t.elapsed() < Duration::from_secs(7), "took {:?}", t.elapsed());
    // The timed-out command is gone (killed and reaped).
    wait_for("sleep 77 gone", Duration::from_secs(5), || {
        let r = rt.exec_sync(&c, &["ps".into()], Some(Duration::from_secs(5))).unwrap();
        !String::from_utf8_lossy(&r.stdout).contains("sleep 77")
    });
    assert_eq!(rt.exec_sync(&c, &[], None).unwrap_err().kind(), ErrorKind::InvalidArgument);
    rt.reopen_log(&c).unwrap();
    rt.remove_sandbox(&sb).unwrap();
}

#[test]
fn bad_configs_are_refused_by_field_and_leave_nothing() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let mut bad = sandbox_config("bad");
    bad.sysctls.insert("kernel.panic".into(), "1".into());
    let e = rt.create_sandbox(&bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("sysctls[kernel.panic]") && e.to_string().contains("sandbox rt-test/"), "{e}");
    let cfg = sandbox_config("dup");
    let sb = rt.create_sandbox(&cfg).unwrap();
    let e = rt.create_sandbox(&cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(e.to_string().contains(sb.as_str()), "{e}");
    assert_eq!(rt.find_sandbox(&cfg.metadata.namespace, &cfg.metadata.name, 0).unwrap(), Some(sb.clone()));
    // Another namespace, same name: fine.
    let mut other = cfg.clone();
    other.metadata.namespace = "rt-test-2".into();
    let sb2 = rt.create_sandbox(&other).unwrap();
    let mut c = container_config("c", "true");
    c.image.image = "no-such-image:1".into();
    assert_eq!(rt.create_container(&sb, &c).unwrap_err().kind(), ErrorKind::NotFound);
    let mut c = container_config("c", "true");
    c.security_context.capabilities.add.push("CAP_NOPE".into());
    let e = rt.create_container(&sb, &c).unwrap_err();
    assert!(e.to_string().contains("CAP_NOPE") && e.to_string().contains("container \"c\""), "{e}");
    // Nothing of the failed containers is left: the name is free again.
    assert!(rt.list_containers(&ContainerFilter::default()).unwrap().is_empty());
    let ok = rt.create_container(&sb, &container_config("c", "true")).unwrap();
    assert_eq!(rt.find_container(&sb, "c", 0).unwrap(), Some(ok));
    rt.remove_sandbox(&sb).unwrap();
    rt.remove_sandbox(&sb2).unwrap();
    assert!(leftovers(env.root(), &[], &[]).is_empty());
}

#[test]
fn twenty_sandboxes_from_threads_leave_nothing() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let rt = env.rt.clone();
            std::thread::spawn(move || {
                let sb = rt.create_sandbox(&sandbox_config(&format!("many{i}"))).unwrap();
                let c = rt.create_container(&sb, &container_config("c", "echo hi; sleep 100")).unwrap();
                rt.start_container(&c).unwrap();
                let st = rt.sandbox_status(&sb).unwrap();
                let cs = rt.container_status(&c).unwrap();
                assert_eq!(cs.state, ContainerState::Running);
                rt.remove_sandbox(&sb).unwrap();
                (vec![st.holder_pid.unwrap(), cs.pid.unwrap()], st.cgroup_parent)
            })
        })
        .collect();
    let mut pids = Vec::new();
    let mut cgroups = Vec::new();
    for t in threads {
        let (p, cg) = t.join().expect("a thread failed");
        pids.extend(p);
        cgroups.push(cg);
    }
    wait_for("nothing left", Duration::from_secs(10), || leftovers(env.root(), &pids, &cgroups).is_empty());
    assert!(env.rt.list_sandboxes(&SandboxFilter::default()).unwrap().is_empty());
    assert!(env.rt.list_containers(&ContainerFilter::default()).unwrap().is_empty());
    // Removals delete their directories behind the caller (renamed aside
    // at once, deleted by the runtime's reaper thread).
    let state = env.root().join("state");
    for d in ["sandboxes", "containers"] {
        let count = || std::fs::read_dir(state.join(d)).unwrap().count();
        wait_for(&format!("state/{d} emptied"), Duration::from_secs(10), || count() == 0);
    }
    for d in ["names/sandboxes", "names/containers"] {
        let n = std::fs::read_dir(state.join(d)).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{d} left");
    }
    assert_eq!(std::fs::read_dir(env.root().join("run/oci")).unwrap().count(), 0);
}

/// Flip a record's phase on disk, as a creator that died mid-way left it.
fn set_phase(path: &Path, phase: &str) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["phase"] = serde_json::Value::String(phase.into());
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn an_interrupted_create_is_undone_when_the_runtime_opens_again() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let cfg = sandbox_config("crash");
    let sb = rt.create_sandbox(&cfg).unwrap();
    let c = rt.create_container(&sb, &container_config("c", "sleep 100")).unwrap();
    let ok = rt.create_sandbox(&sandbox_config("survivor")).unwrap();
    let holder = rt.sandbox_status(&sb).unwrap().holder_pid.unwrap();
    let pid = rt.container_status(&c).unwrap().pid.unwrap();
    let state = env.root().join("state");
    set_phase(&state.join("sandboxes").join(sb.as_str()).join("sandbox.json"), "Creating");
    set_phase(&state.join("containers").join(c.as_str()).join("container.json"), "Creating");
    // A daemon restarting on the same directories.
    let again = Runtime::open(env.opts.clone()).unwrap();
    assert_eq!(again.sandbox_status(&sb).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(again.container_status(&c).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(again.find_sandbox(&cfg.metadata.namespace, &cfg.metadata.name, 0).unwrap(), None);
    assert_eq!(again.sandbox_status(&ok).unwrap().state, SandboxState::Ready, "a finished sandbox is kept");
    wait_for("holder and container gone", Duration::from_secs(10), || leftovers(env.root(), &[holder, pid], &[]).is_empty());
    again.remove_sandbox(&ok).unwrap();
}

/// Read an attached client's output until it holds `want` (or the
/// container's output ends); what came.
fn read_until(conn: &hull::runtime::attach::AttachConn, want: &str) -> String {
    use hull::runtime::attach::Output;
    conn.set_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(want) {
        match conn.recv() {
            Ok(Some(Output::Stdout(d) | Output::Stderr(d))) => got.extend_from_slice(&d),
            Ok(None) => break,
            Err(e) => panic!("attach recv: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

#[test]
fn stdin_and_tty_containers_held_by_the_monitor_for_attach() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let sb = rt.create_sandbox(&sandbox_config("attach")).unwrap();

    // stdin on a pipe, stdin_once: input reaches cat; a client without
    // stdin comes and goes; the stdin client's detach is the container's EOF.
    let mut c = container_config("cat", "cat; echo done-$?");
    c.stdin = true;
    c.stdin_once = true;
    let id = rt.create_container(&sb, &c).unwrap();
    rt.start_container(&id).unwrap();
    let point = rt.attach(&id).unwrap();
    assert!(point.stdin && point.stdin_once && !point.tty);
    let a = point.connect(true).unwrap();
    let watcher = point.connect(false).unwrap();
    a.write_stdin(b"hello\n").unwrap();
    assert!(read_until(&a, "hello\n").contains("hello"));
    assert!(read_until(&watcher, "hello\n").contains("hello"));
    drop(watcher);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rt.container_status(&id).unwrap().state, ContainerState::Running, "a client without stdin left");
    a.write_stdin(b"more\n").unwrap();
    assert!(read_until(&a, "more\n").contains("more"));
    drop(a);
    wait_for("cat to see EOF and exit", Duration::from_secs(20), || rt.container_status(&id).unwrap().state == ContainerState::Exited);
    let st = rt.container_status(&id).unwrap();
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(log_text(&st), "hello\nmore\ndone-0");
    // An exited container is not attachable.
    assert_eq!(rt.attach(&id).unwrap_err().kind(), ErrorKind::FailedPrecondition);

    // A terminal: the window size a client sets is the shell's, its input
    // is echoed, and its output goes to the log as stdout.
    let mut t = container_config("tty", "read x; stty size; echo got-$x; tty; sleep 1000");
    t.stdin = true;
    t.tty = true;
    let tid = rt.create_container(&sb, &t).unwrap();
    rt.start_container(&tid).unwrap();
    let point = rt.attach(&tid).unwrap();
    assert!(point.tty);
    let st = rt.container_status(&tid).unwrap();
    let monitor = parent_pid(st.pid.unwrap());
    let before = settled_fds(monitor, &st.log_path);
    let conn = point.connect(true).unwrap();
    conn.resize(33, 101).unwrap();
    conn.write_stdin(b"abc\n").unwrap();
    let out = read_until(&conn, "/dev/pts/");
    assert!(out.contains("33 101") && out.contains("got-abc") && out.contains("/dev/pts/"), "{out:?}");
    wait_for("the tty output in the log", Duration::from_secs(10), || log_text(&st).contains("/dev/pts/"));
    let text = std::fs::read_to_string(&st.log_path).unwrap();
    assert!(text.lines().all(|l| l.split(' ').nth(1) == Some("stdout")), "{text}");
    // Clients that attach and vanish at once.
    drop(conn);
    for _ in 0..3 {
        drop(point.connect(true).unwrap());
    }
    wait_for("the tty monitor back to its fds", Duration::from_secs(10), || open_fds(monitor) == before);
    assert_eq!(rt.container_status(&tid).unwrap().state, ContainerState::Running);

    // A terminal with stdin_once: once the first stdin client is done, no
    // more input reaches the shell (its terminal stays, as with conmon).
    let mut once = container_config("once", "exec sh");
    once.stdin = true;
    once.stdin_once = true;
    once.tty = true;
    let oid = rt.create_container(&sb, &once).unwrap();
    rt.start_container(&oid).unwrap();
    let opoint = rt.attach(&oid).unwrap();
    let ost = rt.container_status(&oid).unwrap();
    let omonitor = parent_pid(ost.pid.unwrap());
    let unattached = settled_fds(omonitor, &ost.log_path);
    let first = opoint.connect(true).unwrap();
    first.write_stdin(b"echo one-$((0+1))\n").unwrap();
    assert!(read_until(&first, "one-1").contains("one-1"));
    drop(first);
    // The monitor sees the first client go only once every copy of its fd
    // is closed: a child forked meanwhile by another test's thread holds one
    // until it execs. The second client comes after that.
    wait_for("the monitor to see the first client go", Duration::from_secs(20), || open_fds(omonitor) <= unattached);
    let second = opoint.connect(true).unwrap();
    second.write_stdin(b"echo two-$((1+1))\n").unwrap();
    second.set_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut late = Vec::new();
    while let Ok(Some(hull::runtime::attach::Output::Stdout(d))) = second.recv() {
        late.extend_from_slice(&d);
    }
    assert!(!String::from_utf8_lossy(&late).contains("two-2"), "{:?}", String::from_utf8_lossy(&late));
    assert_eq!(rt.container_status(&oid).unwrap().state, ContainerState::Running);
    drop(second);

    // Clients that never read while the output floods (12.5 MiB) are
    // dropped by the monitor; the container runs on.
    let mut flood = container_config("flood", "read x; dd if=/dev/zero bs=65536 count=200 2>/dev/null | tr '\\0' x; echo; sleep 1000");
    flood.stdin = true;
    let fid = rt.create_container(&sb, &flood).unwrap();
    rt.start_container(&fid).unwrap();
    let fpoint = rt.attach(&fid).unwrap();
    let fst = rt.container_status(&fid).unwrap();
    let fmon = parent_pid(fst.pid.unwrap());
    let fbefore = settled_fds(fmon, &fst.log_path);
    let clients: Vec<_> = (0..3).map(|_| fpoint.connect(false).unwrap()).collect();
    wait_for("the flood's clients attached", Duration::from_secs(30), || open_fds(fmon) == fbefore + 3);
    clients[0].write_stdin(b"go\n").unwrap();
    wait_for("the slow clients dropped", Duration::from_secs(60), || open_fds(fmon) == fbefore);
    assert_eq!(rt.container_status(&fid).unwrap().state, ContainerState::Running);
    wait_for("the flood in the log", Duration::from_secs(30), || std::fs::metadata(&fst.log_path).is_ok_and(|m| m.len() > 12 << 20));
    drop(clients);
    let monitors = [monitor, fmon];
    rt.remove_sandbox(&sb).unwrap();
    assert!(leftovers(env.root(), &monitors, &[]).is_empty(), "{:?}", leftovers(env.root(), &monitors, &[]));
}

#[test]
fn a_pod_network_container_of_a_host_network_sandbox_shares_the_node_network() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let mut cfg = sandbox_config("hostnet");
    cfg.security_context.namespace_options.network = NamespaceMode::Node;
    let sb = rt.create_sandbox(&cfg).unwrap();
    // The container asks for the pod's network (the default), as a
    // hand-written crictl config does: it gets the node's, the sandbox's.
    let c = rt.create_container(&sb, &container_config("c", "sleep 100")).unwrap();
    rt.start_container(&c).unwrap();
    let out = rt
        .exec_sync(&c, &["readlink".into(), "/proc/self/ns/net".into()], Some(Duration::from_secs(30)))
        .unwrap();
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), host.to_str().unwrap());
    rt.remove_sandbox(&sb).unwrap();
}

/// CDI bind mounts are staged as the config's mounts are: the spec file's
/// host path is opened once at CreateContainer (a symlink followed then)
/// and the OCI spec names hull's staged copy, so swapping the symlink
/// afterwards redirects nothing; a missing host path is refused by name
/// with nothing left behind.
#[test]
fn cdi_mounts_are_bound_from_the_path_resolved_at_create() {
    if !require_root() {
        return;
    }
    let env = Rt::new();
    let rt = &env.rt;
    let host = env.root().join("cdi-host");
    for (d, text) in [("a", "from-a"), ("b", "from-b")] {
        std::fs::create_dir_all(host.join(d)).unwrap();
        std::fs::write(host.join(d).join("f"), text).unwrap();
    }
    let link = host.join("link");
    std::os::unix::fs::symlink(host.join("a"), &link).unwrap();
    let cdi_mount = |p: &Path| cdi::CdiEdits {
        devices: vec!["example.com/dev=x".into()],
        mounts: vec![cdi::CdiMount { host_path: p.into(), container_path: "/opt/cdi".into(), options: vec!["ro".into(), "bind".into()] }],
        ..Default::default()
    };
    let sb = rt.create_sandbox(&sandbox_config("cdi")).unwrap();
    let mut c = container_config("c", "cat /opt/cdi/f");
    c.cdi = cdi_mount(&link);
    let id = rt.create_container(&sb, &c).unwrap();
    let spec = std::fs::read_to_string(env.opts.run_dir.join("containers").join(id.as_str()).join("bundle/config.json")).unwrap();
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let m = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/opt/cdi")
        .expect("the CDI mount")
        .clone();
    let source = m["source"].as_str().unwrap();
    assert!(source.starts_with(env.opts.run_dir.to_str().unwrap()) && !source.contains("link"), "staged, not the spec's path: {m}");
    // The symlink swapped after the check: the mount stays a's.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(host.join("b"), &link).unwrap();
    rt.start_container(&id).unwrap();
    wait_for("exit", Duration::from_secs(20), || rt.container_status(&id).unwrap().state == ContainerState::Exited);
    let st = rt.container_status(&id).unwrap();
    assert_eq!((st.exit_code, log_text(&st).as_str()), (Some(0), "from-a"), "{st:?}");
    rt.remove_container(&id).unwrap();

    let mut bad = container_config("missing", "true");
    bad.cdi = cdi_mount(&host.join("nope"));
    let e = rt.create_container(&sb, &bad).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("cdi mounts[0] (/opt/cdi)") && e.to_string().contains("does not exist"), "{e}");
    assert!(rt.list_containers(&ContainerFilter::default()).unwrap().is_empty());
    rt.remove_sandbox(&sb).unwrap();
    assert!(leftovers(env.root(), &[], &[]).is_empty(), "{:?}", leftovers(env.root(), &[], &[]));
}
