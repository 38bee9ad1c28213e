//! `hull pod run` killed at every step. The points are deterministic: a
//! first run is traced to list the state-changing system calls its main
//! thread makes (mkdir, mount, rename, link, fsync, flock, clone, wait4...),
//! then for each of them a fresh run is SIGKILLed as it enters that call
//! (strace's syscall injection, no hook in hull). After every kill,
//! `hull pod rm` (or, every other time, a new `hull pod run` of the same
//! name and then `pod rm`) must finish or undo the work, and nothing of the
//! pod may be left: no process, mount, cgroup, runtime record, pod
//! directory or name.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The system calls a kill is tried at (each invocation of each).
const POINTS: &str = "mkdir,rename,mount,umount2,linkat,unlink,fsync,flock,clone,clone3,wait4,kill";
/// At most this many kill points (spread evenly over the run).
const MAX_POINTS: usize = 90;
/// The sweep stops starting new points after this long (a loaded machine
/// covers fewer; the count is printed).
const BUDGET: Duration = Duration::from_secs(300);

fn have_strace() -> bool {
    Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success())
}

struct Crash {
    root: tempfile::TempDir,
    /// The CNI config dir `pod run` is given (an empty one: loopback only).
    cni: PathBuf,
    /// The system calls traced and killed at (a subset of [`POINTS`]).
    points: &'static str,
    name: String,
    /// Put in the environment of every `pod run`, so every process it
    /// starts (holder, supervisor, monitors) can be found again.
    marker: String,
}

impl Crash {
    fn hull(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root")
            .arg(self.root.path())
            .env("HULL_STATE_DIR", self.root.path().join("state"))
            .args(args);
        cmd
    }

    fn manifest(&self, uid: &str) -> PathBuf {
        self.manifest_of(&self.name, uid)
    }

    /// The test's manifest for a pod `name` (one the test's own, or another).
    fn manifest_of(&self, name: &str, uid: &str) -> PathBuf {
        let text = format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, uid: {uid}}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  volumes: [{{name: m, emptyDir: {{medium: Memory}}}}, {{name: d, emptyDir: {{}}}}]
  containers:
  - {{name: c, image: {rootfs}, command: [sleep, '1000'], volumeMounts: [{{name: m, mountPath: /m}}, {{name: d, mountPath: /d}}]}}
"#,
            rootfs = rootfs().display()
        );
        let path = self.root.path().join(format!("{name}-{uid}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run_args(&self, manifest: &Path) -> Vec<String> {
        let state = self.root.path().join("state");
        ["pod", "run", "--wait", "10", "--backoff-base-ms", "100", "--cni-conf-dir"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.cni.display().to_string(), "--state-dir".into(), state.display().to_string()])
            .chain([manifest.display().to_string()])
            .collect()
    }

    /// `pod run` under strace: traced only (`inject` None) or killed at
    /// the `n`th call of `syscall`.
    fn traced_run(&self, manifest: &Path, trace: &Path, inject: Option<(&str, usize)>) -> Output {
        let mut cmd = strace(trace, self.points, inject);
        cmd.arg(runtime()).arg("--root").arg(self.root.path()).args(self.run_args(manifest));
        cmd.env("HULL_CRASH_TEST", &self.marker);
        run_cmd(&mut cmd, Duration::from_secs(90))
    }

    fn rm(&self) -> Output {
        self.rm_pod(&self.name)
    }

    fn rm_pod(&self, name: &str) -> Output {
        run_cmd(&mut self.hull(&["pod", "rm", name]), Duration::from_secs(90))
    }

    /// Everything of the pod still on the host.
    fn leftovers(&self, uid: &str) -> Vec<String> {
        let root = self.root.path().to_str().unwrap();
        let mut out = mounts_under(root);
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let marked = env.split(|b| *b == 0).any(|v| v == format!("HULL_CRASH_TEST={}", self.marker).as_bytes());
            let cgroup = read_all(&e.path().join("cgroup"));
            let stat = read_all(&e.path().join("stat"));
            let zombie = stat.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'));
            if (marked || cgroup.contains(&format!("hull-pod-{uid}"))) && !zombie {
                let cmd = s(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
                out.push(format!("process {pid}: {cmd}"));
            }
        }
        for base in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = base.path().join(format!("hull-pod-{uid}"));
            if p.exists() {
                out.push(format!("cgroup: {}", p.display()));
            }
        }
        // Records, names and runtime files (the pods' lock files stay, by design).
        for sub in [
            "state/pod-records",
            "state/pods",
            "state/pod-runtime/sandboxes",
            "state/pod-runtime/containers",
            "state/pod-runtime/names/sandboxes",
            "state/pod-runtime/names/containers",
            "pod-run/pods",
            "pod-run/sandboxes",
            "pod-run/containers",
            "pod-run/exits",
            "pod-run/oci",
        ] {
            for e in std::fs::read_dir(self.root.path().join(sub)).into_iter().flatten().flatten() {
                out.push(format!("file: {}", e.path().display()));
            }
        }
        out
    }

    fn assert_clean(&self, uid: &str, what: &str) {
        let start = Instant::now();
        let mut left = self.leftovers(uid);
        while !left.is_empty() && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
            left = self.leftovers(uid);
        }
        assert!(left.is_empty(), "{what}: left behind:\n{}", left.join("\n"));
    }
}

impl Drop for Crash {
    fn drop(&mut self) {
        let _ = self.rm();
    }
}

/// The kill points of a traced run: (syscall, invocation number), in the
/// order the run made them.
fn kill_points(trace: &str, points: &str, max: usize) -> Vec<(String, usize)> {
    let wanted: Vec<&str> = points.split(',').collect();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut points = Vec::new();
    for line in trace.lines() {
        let Some((name, _)) = line.split_once('(') else { continue };
        if !wanted.contains(&name) {
            continue;
        }
        let n = seen.entry(name.to_string()).or_default();
        *n += 1;
        points.push((name.to_string(), *n));
    }
    if points.len() > max {
        let step = points.len() as f64 / max as f64;
        points = (0..max).map(|i| points[(i as f64 * step) as usize].clone()).collect();
    }
    points
}

#[test]
fn spread_order_visits_every_point_once_spread_out() {
    assert_eq!(spread_order(0), Vec::<usize>::new());
    assert_eq!(spread_order(1), [0]);
    assert_eq!(spread_order(5), [0, 4, 2, 1, 3]);
    assert_eq!(spread_order(8), [0, 4, 2, 6, 1, 5, 3, 7]);
    let mut all = spread_order(14);
    all.sort();
    assert_eq!(all, (0..14).collect::<Vec<_>>());
}

#[test]
fn a_pod_run_killed_at_any_step_is_undone_by_rm_or_the_next_run() {
    if !require_root() || is_runc() {
        return;
    }
    if !have_strace() {
        eprintln!("skipped a_pod_run_killed_at_any_step_is_undone_by_rm_or_the_next_run: strace is not installed");
        return;
    }
    let crash = Crash::new("crash", POINTS);
    std::fs::create_dir_all(&crash.cni).unwrap();
    sweep(&crash, MAX_POINTS, 20);
}

/// With a CNI network (a bridge of the test's own): killed at mounts (the
/// tmpfs, the netns pin), record renames and plugin runs, the network is
/// given back too (no veth on the bridge, no address lease).
#[test]
fn a_cni_pod_run_killed_at_its_mounts_is_undone() {
    if !require_root() || is_runc() {
        return;
    }
    if !have_strace() || !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped a_cni_pod_run_killed_at_its_mounts_is_undone: strace or the CNI plugins are not installed");
        return;
    }
    let crash = Crash::new("crashcni", "mount,rename,clone,wait4");
    let pid = std::process::id();
    let bridge = format!("hcr{}", pid % 100000);
    let forward_before = read_all(Path::new("/proc/sys/net/ipv4/ip_forward"));
    let ipam = crash.root.path().join("ipam");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": format!("hullcrash{pid}"),
        "plugins": [{"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                     "ipam": {"type": "host-local", "dataDir": ipam,
                              "ranges": [[{"subnet": format!("172.30.{}.0/24", 100 + pid % 50)}]]}}]
    });
    std::fs::create_dir_all(&crash.cni).unwrap();
    std::fs::write(crash.cni.join("10-crash.conflist"), conf.to_string()).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sweep(&crash, 16, 3);
        let veths = s(&Command::new("ip").args(["-o", "link", "show", "master", &bridge]).output().unwrap().stdout);
        assert!(veths.trim().is_empty(), "veths left on the bridge:\n{veths}");
        let mut leases = Vec::new();
        for net in std::fs::read_dir(&ipam).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(net.path()).into_iter().flatten().flatten() {
                let n = f.file_name().to_string_lossy().to_string();
                if n.parse::<std::net::IpAddr>().is_ok() {
                    leases.push(n);
                }
            }
        }
        assert!(leases.is_empty(), "address leases left: {leases:?}");
    }));
    let _ = Command::new("ip").args(["link", "del", &bridge]).status();
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &forward_before);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

impl Crash {
    fn new(prefix: &str, points: &'static str) -> Crash {
        let root = tempfile::Builder::new().prefix("hull-crash-t").tempdir_in("/tmp").unwrap();
        let name = unique_id(prefix).replace('_', "-").to_lowercase();
        let cni = root.path().join("cni");
        Crash { marker: name.clone(), root, name, cni, points }
    }
}

/// Kill a run at each traced point (at most `max`, at least `min` of them
/// checked within the budget) and check what rm or the next run leaves.
fn sweep(crash: &Crash, max: usize, min: usize) {
    // A first run makes the root's directories; the reference run after
    // it passes every point the runs below pass.
    let trace = crash.root.path().join("trace");
    let uid = format!("{}-first", crash.name);
    assert_ok(&crash.traced_run(&crash.manifest(&uid), &trace, None));
    assert_ok(&crash.rm());
    crash.assert_clean(&uid, "the first run");
    let uid = format!("{}-ref", crash.name);
    let o = crash.traced_run(&crash.manifest(&uid), &trace, None);
    assert_ok(&o);
    let points = kill_points(&read_all(&trace), crash.points, max);
    assert_ok(&crash.rm());
    crash.assert_clean(&uid, "the reference run");
    assert!(points.len() >= min, "too few kill points traced: {points:?}");

    let start = Instant::now();
    let mut done = 0;
    let mut killed = 0;
    for (i, (sys, n)) in points.iter().enumerate() {
        if start.elapsed() > BUDGET {
            break;
        }
        let what = format!("killed at {sys} #{n} (point {i})");
        let uid = format!("{}-{i}", crash.name);
        let manifest = crash.manifest(&uid);
        let o = crash.traced_run(&manifest, &trace, Some((sys, *n)));
        // A run may make a call fewer than the reference (a wait that
        // ended sooner): then it completed, and is removed as any pod.
        killed += usize::from(!o.status.success());
        // Listing never fails on what the kill left.
        assert_ok(&run_cmd(&mut crash.hull(&["pod", "ls"]), Duration::from_secs(60)));
        if i % 2 == 1 {
            // The next run of the same name finishes or undoes the old one
            // (a pod whose run got as far as its supervisor exists; any
            // other is cleared away for the new run).
            let mut cmd = crash.hull(&[]);
            cmd.args(crash.run_args(&manifest)).env("HULL_CRASH_TEST", &crash.marker);
            let again = run_cmd(&mut cmd, Duration::from_secs(90));
            let exists = s(&again.stderr).contains("already exists");
            assert!(again.status.success() || exists, "{what}: the next run:\n{}", show(&again));
        }
        let rm = crash.rm();
        let nothing = s(&rm.stderr).contains("does not exist") && !crash.root.path().join("state/pod-records").join(&crash.name).exists();
        assert!(rm.status.success() || nothing, "{what}: pod rm:\n{}", show(&rm));
        crash.assert_clean(&uid, &what);
        done += 1;
    }
    eprintln!("{}: {done} of {} kill points checked ({killed} runs killed) in {:?}", crash.points, points.len(), start.elapsed());
    assert!(done >= min.min(10), "only {done} kill points checked within {BUDGET:?}");
    // A run may make fewer calls than the reference (waits and plugin runs
    // that end sooner or later): a few runs complete instead of dying.
    let spared = done - killed;
    assert!(spared <= (done / 10).max(3), "only {killed} of {done} runs were killed: the points do not match the runs");
}

/// Kill points of the supervisor and of `hull pod rm` sampled at most
/// (evenly over the traced run): each sweep adds ~3 s a point.
const MAX_SUPERVISOR_POINTS: usize = 14;
const MAX_RM_POINTS: usize = 12;
/// Each of these sweeps stops starting new points after this long, once
/// it has checked this many.
const SHORT_BUDGET: Duration = Duration::from_secs(45);
const SHORT_MIN_POINTS: usize = 4;

impl Crash {
    /// A plain `pod run` of a fresh uid, which must succeed.
    fn run_ok(&self, uid: &str) {
        let mut cmd = self.hull(&[]);
        cmd.args(self.run_args(&self.manifest(uid))).env("HULL_CRASH_TEST", &self.marker);
        assert_ok(&run_cmd(&mut cmd, Duration::from_secs(90)));
    }

    fn record(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.root.path().join("state/pod-records").join(&self.name).join("pod.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `hull pod rm` under strace: traced only, or killed at the `n`th
    /// call of `syscall`.
    fn traced_rm(&self, trace: &Path, inject: Option<(&str, usize)>) -> Output {
        let mut cmd = strace(trace, self.points, inject);
        cmd.arg(runtime()).arg("--root").arg(self.root.path()).args(["pod", "rm", &self.name]);
        run_cmd(&mut cmd, Duration::from_secs(90))
    }

    /// Take the supervisor over as a pod whose supervisor died would be:
    /// the running one is SIGKILLed, and so is the app's process (a new
    /// supervisor then has a container to restart, not just to adopt);
    /// a new one is started under strace (traced only, or killed at the
    /// `n`th call of `syscall`).
    fn traced_supervisor(&self, trace: &Path, inject: Option<(&str, usize)>) -> std::process::Child {
        let rec = self.record().expect("the pod's record");
        let pid = rec["supervisorPid"].as_i64().expect("a supervisor pid") as i32;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        // Gone, or a zombie left to whoever reaps it.
        let gone = || {
            read_all(Path::new(&format!("/proc/{pid}/stat")))
                .rsplit(") ")
                .next()
                .is_none_or(|r| r.is_empty() || r.starts_with('Z'))
        };
        wait_for("the supervisor to die", Duration::from_secs(30), gone);
        let uid = rec["uid"].as_str().unwrap().to_string();
        for p in self.pod_processes(&uid) {
            if s(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default()).starts_with("sleep\0") {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
            }
        }
        let log = self.root.path().join("supervisor-test.log");
        let mut cmd = strace(trace, self.points, inject);
        cmd.arg(runtime()).arg("--root").arg(self.root.path()).arg("--log").arg(&log);
        if let Some(images) = rec["imageRoot"].as_str().filter(|p| !p.is_empty()) {
            cmd.arg("--image-root").arg(images);
        }
        cmd.args(["pod", "supervise", "--backoff-base-ms", "100", &self.name]);
        cmd.env("HULL_CRASH_TEST", &self.marker).stdin(std::process::Stdio::null());
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.spawn().expect("start strace")
    }

    /// The processes in the pod's cgroups.
    fn pod_processes(&self, uid: &str) -> Vec<i32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
            if read_all(&e.path().join("cgroup")).contains(&format!("hull-pod-{uid}")) {
                out.push(pid);
            }
        }
        out
    }

    /// Whether the app container runs again after a restart.
    fn restarted(&self) -> bool {
        let Some(rec) = self.record() else { return false };
        let c = &rec["containers"][0];
        c["restartCount"].as_u64().is_some_and(|n| n >= 1) && c["state"] == "Running"
    }
}

/// The order a budget-bound sweep visits `n` points in: each prefix
/// spread over the whole run (0, n/2, n/4, 3n/4, ...: bit-reversed
/// indices), so a loaded machine that checks only a few still checks the
/// start, the middle and the end.
fn spread_order(n: usize) -> Vec<usize> {
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    let rev = |i: usize| if bits == 0 { 0 } else { i.reverse_bits() >> (usize::BITS - bits) };
    (0..1usize << bits).map(rev).filter(|&i| i < n).collect()
}

/// strace for one command: trace `points`, or only `inject`'s call and
/// SIGKILL the command as it enters its `n`th invocation.
fn strace(trace: &Path, points: &str, inject: Option<(&str, usize)>) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-qq", "-o"]).arg(trace);
    match inject {
        None => cmd.arg("-e").arg(format!("trace={points}")),
        Some((sys, n)) => cmd
            .arg("-e")
            .arg(format!("trace={sys}"))
            .arg("-e")
            .arg(format!("inject={sys}:signal=KILL:when={n}")),
    };
    cmd
}

/// A traced command running on its own; killed if a failed check leaves
/// it running.
struct Reap(Option<std::process::Child>, Option<std::process::ExitStatus>);

impl Reap {
    fn new(child: std::process::Child) -> Reap {
        Reap(Some(child), None)
    }

    /// Whether it has ended (its status is kept).
    fn ended(&mut self) -> bool {
        if let Some(Ok(Some(st))) = self.0.as_mut().map(|c| c.try_wait()) {
            self.0 = None;
            self.1 = Some(st);
        }
        self.0.is_none()
    }

    /// Wait (bounded) for it to end.
    fn finish(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.ended() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.ended()
    }

    /// Whether it ended by SIGKILL (strace ends with its tracee's signal).
    fn killed(&self) -> bool {
        self.1
            .is_some_and(|st| std::os::unix::process::ExitStatusExt::signal(&st) == Some(9) || st.code() == Some(137))
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The frame of the sweeps below: skipped without strace; a reference
/// traced by `reference` (given the root's trace file); then, for each kill
/// point (spread over the run, within the budget), `point` with a fresh
/// uid, which returns whether its command was killed; then what is left
/// of the pod is checked.
fn short_sweep(
    test: &str,
    prefix: &str,
    max: usize,
    reference: impl FnOnce(&Crash, &Path, &str),
    mut point: impl FnMut(&Crash, &Path, (&str, usize), &str, usize) -> bool,
) {
    if !require_root() || is_runc() {
        return;
    }
    if !have_strace() {
        eprintln!("skipped {test}: strace is not installed");
        return;
    }
    let crash = Crash::new(prefix, POINTS);
    std::fs::create_dir_all(&crash.cni).unwrap();
    let trace = crash.root.path().join("trace");
    let uid = format!("{}-ref", crash.name);
    crash.run_ok(&uid);
    reference(&crash, &trace, "the reference");
    crash.assert_clean(&uid, "the reference");
    let points = kill_points(&read_all(&trace), crash.points, max);
    assert!(points.len() >= 6, "too few kill points traced: {points:?}");
    let start = Instant::now();
    let (mut done, mut killed) = (0, 0);
    for i in spread_order(points.len()) {
        // The first few are checked however loaded the machine is.
        if start.elapsed() > SHORT_BUDGET && done >= SHORT_MIN_POINTS {
            break;
        }
        let (sys, n) = &points[i];
        let what = format!("{prefix}: killed at {sys} #{n} (point {i})");
        let uid = format!("{}-{i}", crash.name);
        crash.run_ok(&uid);
        killed += usize::from(point(&crash, &trace, (sys, *n), &what, done));
        crash.assert_clean(&uid, &what);
        done += 1;
    }
    eprintln!("{prefix}: {done} of {} kill points checked ({killed} killed) in {:?}", points.len(), start.elapsed());
    assert!(done - killed <= (done / 10).max(2), "only {killed} of {done} were killed: the points do not match the runs");
}

/// The pod's supervisor killed at each step of its work (taking over from
/// a dead one, restarting the app's container, stopping the pod for
/// `pod rm`): after each kill, `pod rm` (or, every other time, a new
/// supervisor started by `pod ps` and then `pod rm`) leaves nothing.
#[test]
fn a_supervisor_killed_at_any_step_is_undone_by_rm_or_the_next_supervisor() {
    // The reference: a supervisor that takes over, restarts the app and
    // stops the pod, traced from start to end.
    let reference = |crash: &Crash, trace: &Path, what: &str| {
        let mut sup = Reap::new(crash.traced_supervisor(trace, None));
        wait_for("the new supervisor to restart the app", Duration::from_secs(60), || crash.restarted());
        assert_ok(&crash.rm());
        assert!(sup.finish(Duration::from_secs(60)), "{what}: the traced supervisor did not end after pod rm");
    };
    let point = |crash: &Crash, trace: &Path, at: (&str, usize), what: &str, done: usize| {
        let mut sup = Reap::new(crash.traced_supervisor(trace, Some(at)));
        // Until it is killed, or has done its work up to the stop.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sup.ended() && !crash.restarted() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if done % 2 == 1 && sup.ended() {
            // A supervisor started anew (by `pod ps`) takes over.
            assert_ok(&run_cmd(&mut crash.hull(&["pod", "ps", &crash.name]), Duration::from_secs(60)));
        }
        let rm = crash.rm();
        assert!(rm.status.success(), "{what}: pod rm:\n{}", show(&rm));
        assert!(sup.finish(Duration::from_secs(60)), "{what}: the traced supervisor did not end after pod rm");
        sup.killed()
    };
    short_sweep(
        "a_supervisor_killed_at_any_step_is_undone_by_rm_or_the_next_supervisor",
        "crashsup",
        MAX_SUPERVISOR_POINTS,
        reference,
        point,
    );
}

/// `hull pod rm` killed at each step: a following `pod rm` finishes the
/// removal and leaves nothing.
#[test]
fn a_pod_rm_killed_at_any_step_is_finished_by_the_next_rm() {
    let reference = |crash: &Crash, trace: &Path, _: &str| assert_ok(&crash.traced_rm(trace, None));
    let point = |crash: &Crash, trace: &Path, at: (&str, usize), what: &str, _: usize| {
        let o = crash.traced_rm(trace, Some(at));
        assert_ok(&run_cmd(&mut crash.hull(&["pod", "ls"]), Duration::from_secs(60)));
        let rm = crash.rm();
        let nothing = s(&rm.stderr).contains("does not exist") && !crash.root.path().join("state/pod-records").join(&crash.name).exists();
        assert!(rm.status.success() || nothing, "{what}: the next pod rm:\n{}", show(&rm));
        !o.status.success()
    };
    short_sweep("a_pod_rm_killed_at_any_step_is_finished_by_the_next_rm", "crashrm", MAX_RM_POINTS, reference, point);
}

/// Two pods of one metadata.uid share a state directory name. A `pod run`
/// of the first killed after its record names the directory and before it
/// is made; the second pod then makes it (and mounts its emptyDirs there):
/// `pod rm` of the first leaves the second's directory and mounts alone.
#[test]
fn a_killed_run_leaves_the_state_dir_of_another_pod_of_its_uid_alone() {
    if !require_root() || is_runc() {
        return;
    }
    if !have_strace() {
        eprintln!("skipped a_killed_run_leaves_the_state_dir_of_another_pod_of_its_uid_alone: strace is not installed");
        return;
    }
    let crash = Crash::new("uidrace", "mkdir");
    std::fs::create_dir_all(&crash.cni).unwrap();
    let uid = format!("{}-shared", crash.name);
    let state_pods = crash.root.path().join("state/pods");
    let trace = crash.root.path().join("trace");
    // The mkdir that makes the pod's state directory (or the one it is
    // made in), in a reference run after a first one that made the root's
    // directories.
    crash.run_ok(&uid);
    assert_ok(&crash.rm());
    assert_ok(&crash.traced_run(&crash.manifest(&uid), &trace, None));
    assert_ok(&crash.rm());
    let at = read_all(&trace)
        .lines()
        .filter(|l| l.starts_with("mkdir("))
        .position(|l| l.contains(&format!("{}/", state_pods.display())) && l.contains(&uid))
        .expect("a mkdir of the pod's state directory")
        + 1;
    let o = crash.traced_run(&crash.manifest(&uid), &trace, Some(("mkdir", at)));
    assert!(!o.status.success(), "the run was not killed at its state directory's mkdir");
    let pod_state = state_pods.join(&uid);
    assert!(!pod_state.exists());

    let other = format!("{}-b", crash.name);
    struct Remove<'a>(&'a Crash, &'a str);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = self.0.rm_pod(self.1);
        }
    }
    let _other_guard = Remove(&crash, &other);
    let mut cmd = crash.hull(&[]);
    cmd.args(crash.run_args(&crash.manifest_of(&other, &uid))).env("HULL_CRASH_TEST", &crash.marker);
    assert_ok(&run_cmd(&mut cmd, Duration::from_secs(90)));
    assert!(pod_state.is_dir());
    let mounted = || read_all(Path::new("/proc/self/mountinfo")).contains(&format!("{}/", pod_state.display()));
    assert!(mounted(), "the other pod's tmpfs emptyDir is not mounted");

    assert_ok(&crash.rm());
    assert!(pod_state.is_dir(), "pod rm of the killed run removed the other pod's state directory");
    assert!(mounted(), "pod rm of the killed run unmounted the other pod's emptyDir");
    assert_ok(&crash.rm_pod(&other));
    assert!(!pod_state.exists(), "the other pod's state directory is left");
    crash.assert_clean(&uid, "both pods removed");
}
