//! Container probes (`hull::pod::probe`) against real containers: exec
//! through hull's OCI exec, tcpSocket and httpGet from inside the
//! container's network namespace.
//!
//! These call the library from the (multi-threaded) test process: nothing
//! forks in it (exec checks run `hull exec`, network checks join the
//! namespace on a thread of their own).

mod common;

use common::*;
use hull::oci::state::StateRoot;
use hull::pod::probe::{self, Outcome, ProbeAction, ProbeError, ProbeTarget};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Root, and hull as the runtime: the probes read hull's state records, so
/// a run against runc (`HULL_TEST_RUNTIME`) skips them, saying so.
fn can_run() -> bool {
    if is_runc() {
        eprintln!("skipping: probe tests use hull's library on hull's state, not runc's");
        return false;
    }
    require_root()
}

struct Running {
    env: TestEnv,
    root: StateRoot,
    netns: PathBuf,
    hull: PathBuf,
}

impl Running {
    fn start(name: &str, script: &str, setup: impl FnOnce(&mut TestEnv)) -> Running {
        let mut env = TestEnv::new(name);
        env.config["process"]["env"] = json!(["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]);
        setup(&mut env);
        env.sh(script);
        env.start_running();
        env.wait_status("running");
        let root = StateRoot::new(env.root.path());
        let netns = PathBuf::from(format!("/proc/{}/ns/net", env.pid()));
        Running { env, root, netns, hull: runtime() }
    }

    fn target(&self) -> ProbeTarget<'_> {
        ProbeTarget { root: &self.root, hull: &self.hull, container_id: &self.env.id, netns: &self.netns, pod_ip: None }
    }

    fn check(&self, action: &ProbeAction, timeout: Duration) -> Result<Outcome, ProbeError> {
        probe::run(action, timeout, &self.target())
    }

    #[track_caller]
    fn outcome(&self, action: &ProbeAction) -> Outcome {
        self.check(action, Duration::from_secs(2)).unwrap_or_else(|e| panic!("probe {action:?}: {e}"))
    }

    /// Check until it succeeds (a server starting up), bounded.
    #[track_caller]
    fn wait_success(&self, action: &ProbeAction) {
        let mut last = None;
        wait_for(&format!("{action:?} to succeed"), WAIT_TIMEOUT, || {
            let o = self.outcome(action);
            let ok = o == Outcome::Success;
            last = Some(o);
            ok
        });
    }
}

fn exec(args: &[&str]) -> ProbeAction {
    ProbeAction::Exec { command: args.iter().map(|s| s.to_string()).collect() }
}

fn failure(o: Outcome) -> String {
    match o {
        Outcome::Failure(m) => {
            eprintln!("probe failed as expected: {m}");
            m
        }
        Outcome::Success => panic!("the probe should have failed"),
    }
}

/// Give the container CAP_NET_ADMIN so its script can bring loopback up.
fn net_admin(env: &mut TestEnv) {
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_NET_ADMIN"));
    }
}

#[test]
fn exec_probe_success_failure_and_output() {
    if !can_run() {
        return;
    }
    let c = Running::start("probe-exec", "exec sleep 1000", |_| {});
    assert_eq!(c.outcome(&exec(&["true"])), Outcome::Success);
    let m = failure(c.outcome(&exec(&["false"])));
    assert!(m.contains("exited with code 1"), "{m}");
    // stdout and stderr of the command end up in the message
    let m = failure(c.outcome(&exec(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"])));
    assert!(m.contains("exited with code 3") && m.contains("to-stdout") && m.contains("to-stderr"), "{m}");
    // the command runs in the container (its hostname, its filesystem)
    assert_eq!(
        c.outcome(&exec(&["sh", "-c", "test -x /bin/busybox && test \"$(hostname)\" = \"$(cat /proc/sys/kernel/hostname)\""])),
        Outcome::Success
    );
    // the command gets a sane signal state: SIGPIPE at its default action
    // (Rust, cargo and the hull binary ignore it) and nothing blocked
    let m = failure(c.outcome(&exec(&["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status; exit 1"])));
    let mask = |field: &str| {
        let line = m
            .lines()
            .find_map(|l| l.split_once(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {m}"))
            .1;
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(mask("SigIgn") & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored: {m}");
    assert_eq!(mask("SigBlk"), 0, "{m}");
    // output beyond the limit is read and dropped, not blocking the command
    let m = failure(c.outcome(&exec(&["sh", "-c", "yes probe-output | head -c 200000; exit 1"])));
    assert!(m.len() < probe::OUTPUT_LIMIT + 200, "message of {} bytes", m.len());
    // a command the container does not have fails the probe
    let m = failure(c.outcome(&exec(&["no-such-command"])));
    assert!(m.contains("no-such-command"), "{m}");
    // the container is unaffected
    assert_eq!(c.env.status().as_deref(), Some("running"));
}

#[test]
fn exec_probe_timeout_kills_the_command() {
    if !can_run() {
        return;
    }
    let c = Running::start("probe-exec-timeout", "exec sleep 1000", |_| {});
    let t = Instant::now();
    let m = failure(c.check(&exec(&["sleep", "5"]), Duration::from_secs(1)).expect("a verdict"));
    let took = t.elapsed();
    assert!(m.contains("timed out after 1s"), "{m}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(3), "took {took:?}");
    // the timed-out command is gone, and so is a child it started
    let m = failure(c.check(&exec(&["sh", "-c", "sleep 7 & sleep 6"]), Duration::from_secs(1)).expect("a verdict"));
    assert!(m.contains("timed out"), "{m}");
    wait_for("the probe commands to be killed", WAIT_TIMEOUT, || {
        let ps = c.env.exec(&["ps", "-o", "args"]);
        let out = s(&ps.stdout);
        !out.contains("sleep 5") && !out.contains("sleep 6") && !out.contains("sleep 7")
    });
}

#[test]
fn exec_probe_in_a_missing_container_is_an_error_not_a_failure() {
    if !can_run() {
        return;
    }
    let c = Running::start("probe-exec-gone", "exec sleep 1000", |_| {});
    let root = StateRoot::new(c.env.root.path());
    let target = ProbeTarget { root: &root, hull: &c.hull, container_id: "no-such-container", netns: &c.netns, pod_ip: None };
    let e = probe::run(&exec(&["true"]), Duration::from_secs(1), &target).expect_err("no container");
    assert!(matches!(e, ProbeError::Container { .. }), "{e}");
    assert!(e.to_string().contains("no-such-container"), "{e}");
    // a stopped container: no verdict either (the supervisor sees the exit)
    assert_ok(&c.env.kill("KILL"));
    c.env.wait_status("stopped");
    let e = c.check(&exec(&["true"]), Duration::from_secs(1)).expect_err("stopped");
    assert!(matches!(&e, ProbeError::Container { source, .. } if matches!(**source, hull::Error::InvalidState(_))), "{e:?}");
}

#[test]
fn tcp_socket_probe_inside_the_network_namespace() {
    if !can_run() {
        return;
    }
    let host_ns = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let on_host = |port: &str| std::net::TcpStream::connect_timeout(&port.parse().unwrap(), Duration::from_millis(200)).is_ok();
    let host_had_8080 = on_host("127.0.0.1:8080");
    let c = Running::start("probe-tcp", "ip link set lo up && exec nc -ll -p 8080 -e true", net_admin);
    assert_ne!(std::fs::read_link(&c.netns).unwrap(), host_ns, "the container should have its own network namespace");
    let open = ProbeAction::TcpSocket { host: None, port: 8080 };
    c.wait_success(&open);
    let m = failure(c.outcome(&ProbeAction::TcpSocket { host: None, port: 8082 }));
    assert!(m.contains("127.0.0.1:8082") && m.to_lowercase().contains("refused"), "{m}");
    // an explicit host works the same
    assert_eq!(c.outcome(&ProbeAction::TcpSocket { host: Some("127.0.0.1".parse().unwrap()), port: 8080 }), Outcome::Success);
    // the port is not open in the host's namespace: the probe really ran inside
    if host_had_8080 {
        eprintln!("note: port 8080 is open on the host; cannot tell the namespaces apart by it");
    } else {
        assert!(!on_host("127.0.0.1:8080"), "port 8080 is open in the host's namespace");
    }
    // and the test process never left the host's namespace
    assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), host_ns);
    assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), host_ns);
}

#[test]
fn tcp_socket_probe_with_a_bad_netns_is_an_error() {
    if !can_run() {
        return;
    }
    let root = StateRoot::new("/nonexistent");
    let netns = PathBuf::from("/nonexistent/ns/net");
    let target = ProbeTarget { root: &root, hull: &runtime(), container_id: "x", netns: &netns, pod_ip: None };
    let e = probe::run(&ProbeAction::TcpSocket { host: None, port: 1 }, Duration::from_secs(1), &target).expect_err("no netns");
    assert!(matches!(e, ProbeError::Sys { .. }) && e.to_string().contains("/nonexistent/ns/net"), "{e}");
}

#[test]
fn http_get_probe_status_codes() {
    if !can_run() {
        return;
    }
    let www = host_tempdir("hull-probe-www-");
    std::fs::write(www.path().join("index.html"), "hello from httpd\n").unwrap();
    std::fs::write(www.path().join("healthz"), "ok\n").unwrap();
    let dir = www.path().to_path_buf();
    let c = Running::start("probe-http", "ip link set lo up && exec httpd -f -p 8081 -h /www", |env| {
        net_admin(env);
        env.add_mount(json!({"destination": "/www", "type": "bind", "source": dir.to_str().unwrap(), "options": ["rbind", "ro"]}));
    });
    let get =
        |path: &str| ProbeAction::HttpGet { host: None, port: 8081, path: path.into(), headers: vec![("X-Probe".into(), "hull".into())] };
    c.wait_success(&get("/healthz"));
    assert_eq!(c.outcome(&get("/index.html")), Outcome::Success);
    assert_eq!(c.outcome(&get("/")), Outcome::Success);
    let m = failure(c.outcome(&get("/missing.html")));
    assert!(m.contains("statuscode: 404"), "{m}");
    // nothing listens there: a connection failure, with the URL
    let m = failure(c.outcome(&ProbeAction::HttpGet { host: None, port: 8089, path: "/".into(), headers: vec![] }));
    assert!(m.contains("127.0.0.1:8089") && m.to_lowercase().contains("refused"), "{m}");
}

#[test]
fn http_get_probe_times_out_on_a_silent_server() {
    if !can_run() {
        return;
    }
    // nc accepts the connection and never answers
    let c = Running::start("probe-http-silent", "ip link set lo up && exec nc -ll -p 8083 -e sleep 30", net_admin);
    c.wait_success(&ProbeAction::TcpSocket { host: None, port: 8083 });
    let t = Instant::now();
    let m = failure(
        c.check(&ProbeAction::HttpGet { host: None, port: 8083, path: "/".into(), headers: vec![] }, Duration::from_secs(1))
            .expect("a verdict"),
    );
    assert!(m.contains("timed out"), "{m}");
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
}

/// The loop a pod supervisor runs: a liveness probe that passes while
/// /tmp/healthy exists, checked every second; once the file is removed, two
/// failures in a row report Failed and probing stops.
#[test]
fn liveness_loop_reports_failure_after_the_threshold() {
    if !can_run() {
        return;
    }
    use hull::pod::probe::{ContainerProbes, ProbeKind, ProbeSpec, Transition};
    let c = Running::start("probe-liveness-loop", "touch /tmp/healthy && exec sleep 1000", |env| {
        env.writable_tmp();
    });
    let manifest: k8s_openapi::api::core::v1::Probe = serde_json::from_value(json!({
        "exec": {"command": ["test", "-f", "/tmp/healthy"]},
        "periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 1
    }))
    .unwrap();
    let spec = ProbeSpec::from_k8s(ProbeKind::Liveness, &manifest, &[]).unwrap();
    let started = Instant::now();
    let mut probes = ContainerProbes::new(std::slice::from_ref(&spec), started);
    let mut checks = Vec::new();
    let mut failed = None;
    let limit = started + Duration::from_secs(15);
    while let Some(due) = probes.next_due() {
        let now = Instant::now();
        assert!(now < limit, "no verdict after 15 s: {checks:?}");
        if due > now {
            std::thread::sleep(due - now);
        }
        for kind in probes.due(Instant::now()) {
            let outcome = probe::run(&spec.action, spec.timing.timeout, &c.target()).expect("a verdict");
            checks.push(outcome.clone());
            if checks.len() == 2 {
                // healthy so far; now break it
                assert_ok(&c.env.exec(&["rm", "/tmp/healthy"]));
            }
            if let Some(t) = probes.record(kind, Instant::now(), &outcome) {
                failed = Some(t);
            }
        }
    }
    assert_eq!(checks[..2], [Outcome::Success, Outcome::Success], "{checks:?}");
    assert_eq!(checks.len(), 4, "{checks:?}");
    match failed {
        Some(Transition::Failed { message }) => assert!(message.contains("exited with code 1"), "{message}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(probes.started() && !probes.get(ProbeKind::Liveness).unwrap().passing());
    // at one check per second: about 3 s from the first check to the verdict
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
}
