//! cgroup resource limits on the real kernel: memory (OOM kill, exit code,
//! event, state flag), CPU quota and shares, pids, `update`, pause/resume,
//! `events --stats`, bad values, `--systemd-cgroup`.
//!
//! The container's cgroup is the default `/<id>` in each v1 hierarchy, so
//! the tests read `/sys/fs/cgroup/<controller>/<id>/...` from the host.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: i64 = 1 << 20;
/// Doubles a shell string until the memory limit stops it.
const MEMORY_HOG: &str = "x=a; while true; do x=$x$x; done";
const BUSY_LOOP: &str = "while :; do :; done";

/// True on a cgroup v1 (or hybrid) host; the v1 tests say they are skipped
/// otherwise.
fn v1_host(test: &str) -> bool {
    if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        return true;
    }
    eprintln!("skipped {test}: the host is not cgroup v1");
    false
}

fn cg_path(env: &TestEnv, controller: &str, file: &str) -> PathBuf {
    let rel = env.config["linux"]["cgroupsPath"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| default_cgroup(env));
    Path::new("/sys/fs/cgroup").join(controller).join(rel.strip_prefix("/").unwrap()).join(file)
}

fn cg_read(env: &TestEnv, controller: &str, file: &str) -> String {
    let p = cg_path(env, controller, file);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())).trim().to_string()
}

fn cpu_usage_ns(env: &TestEnv) -> u64 {
    cg_read(env, "cpuacct", "cpuacct.usage").parse().unwrap()
}

/// The CPU measurements must not compete with each other (the machine has
/// two CPUs): they take this lock.
static CPU_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Measure over 2-second windows until `ok` accepts one (at most 3): other
/// load on the machine can starve a window, but a limit that does not hold
/// shows in every window. Returns the last value.
fn measure(mut sample: impl FnMut() -> f64, ok: impl Fn(f64) -> bool) -> f64 {
    let mut v = 0.0;
    for _ in 0..3 {
        v = sample();
        if ok(v) {
            break;
        }
        eprintln!("measurement {v:.3} out of range, measuring again (machine load?)");
    }
    v
}

fn set_resources(env: &mut TestEnv, resources: Value) {
    for (k, v) in resources.as_object().unwrap() {
        env.config["linux"]["resources"][k] = v.clone();
    }
}

fn memory_env(name: &str, limit: i64) -> TestEnv {
    let mut env = TestEnv::new(name);
    // memory+swap = memory: the hog cannot escape into swap.
    set_resources(&mut env, json!({"memory": {"limit": limit, "swap": limit}}));
    env
}

#[test]
fn oom_killed_run_exits_137() {
    if !require_root() || !v1_host("oom_killed_run_exits_137") {
        return;
    }
    let mut env = memory_env("oom-run", 64 * MIB);
    env.sh(MEMORY_HOG);
    env.write_config();
    let b = env.bundle_path();
    // --debug: the info lines too, so a second report of the kill shows.
    let o = env.run(&["--debug", "run", "--bundle", b.to_str().unwrap(), &env.id]);
    assert_eq!(o.status.code(), Some(137), "an OOM-killed run exits 137:\n{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let said = err.lines().filter(|l| l.contains("was OOM-killed")).count();
    assert_eq!(said, 1, "run says once that the container was OOM-killed:\n{}", show(&o));
    assert_no_leftovers(&env);
}

#[test]
fn oom_kill_gives_an_event_and_the_state_flag() {
    if !require_root() || !v1_host("oom_kill_gives_an_event_and_the_state_flag") {
        return;
    }
    let mut env = memory_env("oom-event", 64 * MIB);
    env.sh(&format!("sleep 0.3; {MEMORY_HOG}"));
    env.create_ok();
    let events_out = env.bundle.path().join("events.out");
    let mut events = env
        .cmd(&["events", "--interval", "1s", &env.id])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&events_out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.start_ok();
    env.wait_status("stopped");
    // `events` ends by itself once the container has stopped.
    let deadline = Instant::now() + WAIT_TIMEOUT;
    let status = loop {
        if let Some(st) = events.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = events.kill();
            let _ = events.wait();
            // runc 1.1's events keeps running; hull's must end.
            assert!(is_runc(), "events did not exit after the container stopped");
            break events.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success() || is_runc(), "events: {status:?}");
    let text = fs::read_to_string(&events_out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|v| v["type"] == "oom" && v["id"] == json!(env.id)), "no oom event in:\n{text}");
    if !is_runc() {
        let st = env.state_json();
        assert_eq!(st["oomKilled"], json!(true), "state: {st}");
    }
    let o = env.run(&["--debug", "delete", &env.id]);
    assert_ok(&o);
    if !is_runc() {
        let said = String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.contains("was OOM-killed")).count();
        assert_eq!(said, 1, "delete says once that the container was OOM-killed:\n{}", show(&o));
    }
    assert_no_leftovers(&env);
}

#[test]
fn normal_exit_is_not_oom_killed() {
    if !require_root() || !v1_host("normal_exit_is_not_oom_killed") || is_runc() {
        return;
    }
    let mut env = memory_env("no-oom", 64 * MIB);
    env.sh("exit 3");
    env.create_ok();
    env.start_ok();
    env.wait_status("stopped");
    assert_eq!(env.state_json()["oomKilled"], json!(false));
    assert_ok(&env.delete());
    assert_no_leftovers(&env);
}

#[test]
fn cpu_quota_limits_a_busy_loop_to_half_a_cpu() {
    if !require_root() || !v1_host("cpu_quota_limits_a_busy_loop_to_half_a_cpu") {
        return;
    }
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = TestEnv::new("cpu-quota");
    // Maximum shares: other load on the machine cannot starve the loop
    // below its quota, so what holds it at 0.5 CPU is the quota.
    set_resources(&mut env, json!({"cpu": {"quota": 50000, "period": 100000, "shares": 262144}}));
    env.sh(BUSY_LOOP);
    assert_ok(&env.run_detached());
    std::thread::sleep(Duration::from_millis(300));
    let sample = || {
        let (t0, u0) = (Instant::now(), cpu_usage_ns(&env));
        std::thread::sleep(Duration::from_secs(2));
        let (t1, u1) = (Instant::now(), cpu_usage_ns(&env));
        let cpus = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
        assert!(cpus <= 0.6, "a busy loop with quota 0.5 CPU used {cpus:.3} CPU");
        cpus
    };
    let cpus = measure(sample, |c| (0.4..=0.6).contains(&c));
    assert!((0.4..=0.6).contains(&cpus), "a busy loop with quota 0.5 CPU used {cpus:.3} CPU");
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn cpu_shares_split_a_shared_cpu_proportionally() {
    if !require_root() || !v1_host("cpu_shares_split_a_shared_cpu_proportionally") {
        return;
    }
    // Shares weigh siblings: the two containers (of two roots) are put
    // side by side. Without cgroupsPath each would be below its own root's
    // directory, and those two would share the CPU equally.
    let mk = |name: &str, shares: u64| {
        let mut env = TestEnv::new(name);
        env.config["linux"]["cgroupsPath"] = json!(format!("/{}", env.id));
        set_resources(&mut env, json!({"cpu": {"shares": shares, "cpus": "0"}}));
        env.sh(BUSY_LOOP);
        env
    };
    let _serial = CPU_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let big = mk("shares-big", 1024);
    let small = mk("shares-small", 512);
    assert_ok(&big.run_detached());
    assert_ok(&small.run_detached());
    assert_eq!(cg_read(&big, "cpuset", "cpuset.cpus"), "0");
    std::thread::sleep(Duration::from_millis(300));
    let sample = || {
        let (b0, s0) = (cpu_usage_ns(&big), cpu_usage_ns(&small));
        std::thread::sleep(Duration::from_secs(2));
        let (b1, s1) = (cpu_usage_ns(&big), cpu_usage_ns(&small));
        (b1 - b0) as f64 / (s1 - s0).max(1) as f64
    };
    let ratio = measure(sample, |r| (1.5..=2.7).contains(&r));
    assert!((1.5..=2.7).contains(&ratio), "shares 1024:512 on one CPU gave a usage ratio of {ratio:.2}");
    for env in [&big, &small] {
        assert_ok(&env.run(&["delete", "--force", &env.id]));
        assert_no_leftovers(env);
    }
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if !require_root() || !v1_host("pids_limit_stops_a_fork_bomb") {
        return;
    }
    let mut env = TestEnv::new("pids-bomb");
    set_resources(&mut env, json!({"pids": {"limit": 10}}));
    env.sh("bomb() { bomb | bomb & }; bomb 2>/dev/null; sleep 1000");
    assert_ok(&env.run_detached());
    assert_eq!(cg_read(&env, "pids", "pids.max"), "10");
    wait_for("fork failures in pids.events", WAIT_TIMEOUT, || {
        fs::read_to_string(cg_path(&env, "pids", "pids.events"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()))
            .is_some_and(|n| n > 0)
    });
    let current: u64 = cg_read(&env, "pids", "pids.current").parse().unwrap();
    assert!(current <= 10, "pids.current {current} above the limit");
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn update_raises_the_memory_limit_seen_inside() {
    if !require_root() || !v1_host("update_raises_the_memory_limit_seen_inside") {
        return;
    }
    let mut env = memory_env("update-mem", 64 * MIB);
    set_resources(&mut env, json!({"pids": {"limit": 50}}));
    env.args(&["sleep", "1000"]);
    assert_ok(&env.run_detached());
    let inside = |file: &str| {
        let o = env.exec(&["cat", file]);
        assert_ok(&o);
        s(&o.stdout).trim().to_string()
    };
    assert_eq!(inside("/sys/fs/cgroup/memory/memory.limit_in_bytes"), (64 * MIB).to_string());
    assert_ok(&env.run(&["update", "--memory", "128m", "--memory-swap", "128m", "--pids-limit", "60", &env.id]));
    assert_eq!(inside("/sys/fs/cgroup/memory/memory.limit_in_bytes"), (128 * MIB).to_string());
    assert_eq!(inside("/sys/fs/cgroup/pids/pids.max"), "60");

    // Lowering both works too (the limit must go down before memory+swap).
    assert_ok(&env.run(&["update", "--memory", "96m", "--memory-swap", "96m", &env.id]));
    assert_eq!(cg_read(&env, "memory", "memory.limit_in_bytes"), (96 * MIB).to_string());
    assert_eq!(cg_read(&env, "memory", "memory.memsw.limit_in_bytes"), (96 * MIB).to_string());
    assert_ok(&env.run(&["update", "--memory", "128m", "--memory-swap", "128m", &env.id]));

    // --resources JSON, from a file.
    let r = env.bundle.path().join("resources.json");
    fs::write(&r, json!({"cpu": {"quota": 20000, "period": 100000}}).to_string()).unwrap();
    assert_ok(&env.run(&["update", "--resources", r.to_str().unwrap(), &env.id]));
    assert_eq!(cg_read(&env, "cpu", "cpu.cfs_quota_us"), "20000");
    // The memory limit set before is still there.
    assert_eq!(cg_read(&env, "memory", "memory.limit_in_bytes"), (128 * MIB).to_string());

    if !is_runc() {
        // The new values are kept in the container's record.
        let rec: Value = serde_json::from_str(&fs::read_to_string(env.state_dir().join("state.json")).unwrap()).unwrap();
        let r = &rec["config"]["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], json!(128 * MIB), "{r}");
        assert_eq!(r["pids"]["limit"], 60, "{r}");
        assert_eq!(r["cpu"]["quota"], 20000, "{r}");
    }
    let o = env.run(&["update", "--memory", "lots", &env.id]);
    assert_fails_mentioning(&o, &["--memory"]);
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn pause_freezes_and_resume_thaws_a_counter() {
    if !require_root() {
        return;
    }
    let host = host_tempdir("hull-pause-");
    let counter = host.path().join("c");
    let mut env = TestEnv::new("pause-counter");
    env.bind(host.path(), "/out")
        .sh("i=0; while true; do i=$((i+1)); echo $i > /out/c.new; mv /out/c.new /out/c; sleep 0.02; done");
    assert_ok(&env.run_detached());
    let read = || fs::read_to_string(&counter).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
    wait_for("the counter to start", WAIT_TIMEOUT, || read() > 3);
    assert_ok(&env.run(&["pause", &env.id]));
    env.wait_status("paused");
    let frozen = read();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(read(), frozen, "the counter moved while paused");
    assert_ok(&env.run(&["resume", &env.id]));
    env.wait_status("running");
    wait_for("the counter to continue", WAIT_TIMEOUT, || read() > frozen + 3);
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn events_stats_prints_json_with_memory_usage() {
    if !require_root() || !v1_host("events_stats_prints_json_with_memory_usage") {
        return;
    }
    let mut env = memory_env("events-stats", 64 * MIB);
    set_resources(&mut env, json!({"pids": {"limit": 20}}));
    env.args(&["sleep", "1000"]);
    assert_ok(&env.run_detached());
    let o = env.run(&["events", "--stats", &env.id]);
    assert_ok(&o);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(&o)));
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], json!(env.id));
    let mem = &v["data"]["memory"];
    assert!(mem["usage"]["usage"].as_u64().unwrap_or(0) > 0, "memory usage: {v}");
    assert_eq!(mem["usage"]["limit"], json!(64 * MIB), "{v}");
    assert!(mem["raw"]["rss"].is_u64() || mem["raw"]["total_rss"].is_u64(), "{v}");
    assert!(v["data"]["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["data"]["pids"]["current"], 1, "{v}");
    assert_eq!(v["data"]["pids"]["limit"], 20, "{v}");
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert_no_leftovers(&env);
}

#[test]
fn events_ends_without_oom_when_the_container_is_deleted() {
    if !require_root() || is_runc() {
        return;
    }
    let mut env = memory_env("events-delete", 64 * MIB);
    env.args(&["sleep", "1000"]);
    assert_ok(&env.run_detached());
    let events_out = env.bundle.path().join("events.out");
    let mut events = env
        .cmd(&["events", "--interval", "100ms", &env.id])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&events_out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // A first stats line before the delete: under load (the emulated v2 VM)
    // events may take longer than any fixed sleep to start.
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !fs::read_to_string(&events_out).unwrap_or_default().contains("\"type\":\"stats\"") {
        if Instant::now() > deadline || events.try_wait().unwrap().is_some() {
            let _ = events.kill();
            let _ = events.wait();
            panic!("no stats line from events: {}", fs::read_to_string(&events_out).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while events.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = events.kill();
            let _ = events.wait();
            panic!("events did not exit after delete");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = fs::read_to_string(&events_out).unwrap();
    assert!(text.lines().any(|l| l.contains("\"type\":\"stats\"")), "no stats lines:\n{text}");
    assert!(!text.contains("\"oom\""), "an oom event without OOM:\n{text}");
    assert_no_leftovers(&env);
}

#[test]
fn events_on_a_missing_container_fails() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new("events-missing");
    assert_fails_mentioning(&env.run(&["events", "--stats", &env.id]), &["does not exist", "not exist"]);
}

#[test]
fn bad_resource_values_name_the_field_and_leave_nothing() {
    if !require_root() || !v1_host("bad_resource_values_name_the_field_and_leave_nothing") {
        return;
    }
    let cases = [
        // Refused by the kernel, after the cgroup was made: rolled back.
        (json!({"cpu": {"cpus": "99"}}), "linux.resources.cpu.cpus"),
        (json!({"cpu": {"shares": 1}}), "linux.resources.cpu.shares"),
        (json!({"memory": {"limit": 128 * MIB, "swap": 64 * MIB}}), "linux.resources.memory"),
        // Refused before anything is made.
        (json!({"memory": {"swappiness": 200}}), "linux.resources.memory.swappiness"),
        (json!({"memory": {"kernel": 1 << 30}}), "linux.resources.memory.kernel"),
        (json!({"blockIO": {"weight": 5}}), "linux.resources.blockIO.weight"),
        (json!({"unified": {"memory.high": "1000000"}}), "linux.resources.unified"),
        (json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}), "pageSize"),
    ];
    for (resources, field) in cases {
        let mut env = TestEnv::new("bad-resources");
        set_resources(&mut env, resources.clone());
        env.args(&["true"]);
        let o = env.create();
        assert_fails_mentioning(&o, &[field]);
        assert_no_leftovers(&env);
    }
}

#[test]
fn systemd_cgroup_path_maps_onto_cgroupfs() {
    if !require_root() || !v1_host("systemd_cgroup_path_maps_onto_cgroupfs") || is_runc() {
        return;
    }
    let mut env = TestEnv::new("systemd-path");
    let slice = format!("hulltest{}.slice", std::process::id());
    env.config["linux"]["cgroupsPath"] = json!(format!("{slice}:hull:{}", env.id));
    set_resources(&mut env, json!({"pids": {"limit": 7}}));
    env.args(&["sleep", "1000"]);
    env.write_config();
    let b = env.bundle_path();
    let o = run_cmd_to(
        &mut env.cmd(&["--systemd-cgroup", "run", "--detach", "--bundle", b.to_str().unwrap(), &env.id]),
        CMD_TIMEOUT,
        &env.out_file,
        &env.err_file,
    );
    assert_ok(&o);
    let dir = Path::new("/sys/fs/cgroup/pids").join(&slice).join(format!("hull-{}.scope", env.id));
    assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap().trim(), "7");
    let cg = fs::read_to_string(format!("/proc/{}/cgroup", env.pid())).unwrap();
    assert!(cg.contains(&format!("/{slice}/hull-{}.scope", env.id)), "{cg}");
    assert_ok(&env.run(&["delete", "--force", &env.id]));
    assert!(!Path::new("/sys/fs/cgroup/pids").join(&slice).exists(), "the slice hull made is left");
    assert_no_leftovers(&env);

    // Without the slice:prefix:name form, --systemd-cgroup is an error.
    let mut env = TestEnv::new("systemd-bad");
    env.config["linux"]["cgroupsPath"] = json!("/plain/path");
    env.args(&["true"]);
    env.write_config();
    let b = env.bundle_path();
    let o = env.run(&["--systemd-cgroup", "create", "--bundle", b.to_str().unwrap(), &env.id]);
    assert_fails_mentioning(&o, &["slice:prefix:name"]);
    assert_no_leftovers(&env);
}

#[test]
fn v2_limits_apply_on_a_v2_host() {
    if !require_root() {
        return;
    }
    let is_v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if !is_v2 {
        eprintln!("skipped v2_limits_apply_on_a_v2_host: /sys/fs/cgroup is not cgroup2 on this host (the v2 code is unit-tested against temp dirs)");
        return;
    }
    let mut env = TestEnv::new("v2-limits");
    set_resources(&mut env, json!({"memory": {"limit": 64 * MIB}, "cpu": {"shares": 1024, "quota": 50000}, "pids": {"limit": 10}}));
    env.sh("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max");
    let out = env.output_ok();
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["67108864", "100", "50000", "100000", "10"]);
    assert_no_leftovers(&env);
}

/// The v2 eBPF device filter, on the hybrid host's controller-less cgroup2
/// mount (device programs need no controller): a process in the cgroup may
/// open /dev/null (allowed) but not /dev/zero (not in the list).
#[test]
fn v2_device_filter_denies_unlisted_devices() {
    if !require_root() {
        return;
    }
    let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].into_iter().map(Path::new).find(|p| {
        nix::sys::statfs::statfs(*p)
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false)
    });
    let Some(mount) = mount else {
        eprintln!("skipped v2_device_filter_denies_unlisted_devices: no cgroup2 mount");
        return;
    };
    let dir = mount.join(unique_id("bpf-devices"));
    fs::create_dir(&dir).unwrap();
    let rules = [
        hull::cgroups::devices::Rule { allow: false, kind: 'a', major: None, minor: None, access: "rwm".into() },
        hull::cgroups::devices::Rule { allow: true, kind: 'c', major: Some(1), minor: Some(3), access: "rwm".into() },
    ];
    let applied = hull::cgroups::v2::devices::apply(&dir, &rules);
    let out = applied.as_ref().ok().map(|_| {
        let script = format!(
            "echo $$ > {}/cgroup.procs || exit 99; head -c1 /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null && echo zero-ok; exit 0",
            dir.display()
        );
        run_cmd(Command::new("/bin/sh").args(["-c", &script]), CMD_TIMEOUT)
    });
    wait_for("the cgroup to empty", WAIT_TIMEOUT, || {
        fs::read_to_string(dir.join("cgroup.procs")).map(|p| p.trim().is_empty()).unwrap_or(true)
    });
    fs::remove_dir(&dir).unwrap();
    applied.unwrap();
    let out = out.unwrap();
    assert_ok(&out);
    let stdout = s(&out.stdout);
    assert!(stdout.contains("null-ok"), "/dev/null should be allowed:\n{}", show(&out));
    assert!(!stdout.contains("zero-ok"), "/dev/zero should be denied:\n{}", show(&out));
    assert!(s(&out.stderr).contains("Operation not permitted"), "{}", show(&out));
}
