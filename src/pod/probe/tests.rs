//! Unit tests of probe specs and the probe state machines (fake clock).
use super::*;
use k8s_openapi::api::core::v1::{ExecAction, GRPCAction, HTTPGetAction, HTTPHeader, TCPSocketAction};
use serde_json::json;

const S: fn(u64) -> Duration = Duration::from_secs;

fn probe(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).expect("a Probe")
}

fn spec(kind: ProbeKind, v: serde_json::Value) -> Result<ProbeSpec, ProbeError> {
    let ports: Vec<ContainerPort> = serde_json::from_value(json!([{"name": "http", "containerPort": 8081}])).unwrap();
    ProbeSpec::from_k8s(kind, &probe(v), &ports)
}

fn err(kind: ProbeKind, v: serde_json::Value) -> String {
    spec(kind, v).expect_err("should be refused").to_string()
}

#[test]
fn defaults_as_the_api_server() {
    let s = spec(ProbeKind::Liveness, json!({"exec": {"command": ["true"]}})).unwrap();
    assert_eq!(s.action, ProbeAction::Exec { command: vec!["true".into()] });
    assert_eq!(s.timing, Timing { initial_delay: S(0), period: S(10), timeout: S(1), success_threshold: 1, failure_threshold: 3 });
    assert_eq!(s.termination_grace_period, None);
    let s = spec(
        ProbeKind::Readiness,
        json!({"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
               "successThreshold": 2, "failureThreshold": 7}),
    )
    .unwrap();
    assert_eq!(s.action, ProbeAction::TcpSocket { host: None, port: 80 });
    assert_eq!(s.timing, Timing { initial_delay: S(5), period: S(2), timeout: S(3), success_threshold: 2, failure_threshold: 7 });
}

#[test]
fn http_get_fields_and_named_ports() {
    let s = spec(
        ProbeKind::Startup,
        json!({"httpGet": {"path": "healthz", "port": "http", "host": "10.1.2.3", "scheme": "HTTP",
               "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "terminationGracePeriodSeconds": 4}),
    )
    .unwrap();
    assert_eq!(
        s.action,
        ProbeAction::HttpGet {
            host: Some("10.1.2.3".parse().unwrap()),
            port: 8081,
            path: "/healthz".into(),
            headers: vec![("X-Probe".into(), "1".into())],
        }
    );
    assert_eq!(s.termination_grace_period, Some(S(4)));
    let s = spec(ProbeKind::Readiness, json!({"httpGet": {"port": "9090"}})).unwrap();
    assert!(matches!(s.action, ProbeAction::HttpGet { port: 9090, ref path, .. } if path == "/"));
    // the typed structs work as well as JSON
    let p = Probe { tcp_socket: Some(TCPSocketAction { host: Some("::1".into()), port: IntOrString::Int(1) }), ..Default::default() };
    let s = ProbeSpec::from_k8s(ProbeKind::Liveness, &p, &[]).unwrap();
    assert_eq!(s.action, ProbeAction::TcpSocket { host: Some("::1".parse().unwrap()), port: 1 });
}

#[test]
fn refusals_name_the_field() {
    use ProbeKind::*;
    let e = err(Liveness, json!({"grpc": {"port": 9000}}));
    assert!(e.contains("livenessProbe.grpc is not supported"), "{e}");
    let e = err(Readiness, json!({"httpGet": {"port": 80, "scheme": "HTTPS"}}));
    assert!(e.contains("readinessProbe.httpGet.scheme is not supported") && e.contains("HTTPS"), "{e}");
    let e = err(Readiness, json!({"httpGet": {"port": 80, "scheme": "FTP"}}));
    assert!(e.contains("Unsupported value"), "{e}");
    let e = err(Liveness, json!({}));
    assert!(e.contains("must specify a handler type"), "{e}");
    let e = err(Liveness, json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}}));
    assert!(e.contains("more than 1 handler"), "{e}");
    let e = err(Liveness, json!({"exec": {"command": []}}));
    assert!(e.contains("livenessProbe.exec.command: Required value"), "{e}");
    let e = err(Liveness, json!({"exec": {"command": ["true"]}, "successThreshold": 2}));
    assert_eq!(e, "livenessProbe.successThreshold: must be 1");
    let e = err(Startup, json!({"exec": {"command": ["true"]}, "successThreshold": 3}));
    assert_eq!(e, "startupProbe.successThreshold: must be 1");
    let e = err(Readiness, json!({"exec": {"command": ["true"]}, "periodSeconds": -1}));
    assert!(e.contains("periodSeconds: must be greater than or equal to 0"), "{e}");
    let e = err(Readiness, json!({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 5}));
    assert!(e.contains("must not be set for readinessProbes"), "{e}");
    let e = err(Liveness, json!({"tcpSocket": {"port": "metrics"}}));
    assert!(e.contains("no container port named \"metrics\""), "{e}");
    let e = err(Liveness, json!({"tcpSocket": {"port": 70000}}));
    assert!(e.contains("between 1 and 65535"), "{e}");
    let e = err(Liveness, json!({"tcpSocket": {"port": 80, "host": "db.example"}}));
    assert!(e.contains("give an IP address"), "{e}");
    let e = err(Liveness, json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "a\r\nEvil: 1"}]}}));
    assert!(e.contains("httpHeaders[0].value"), "{e}");
    let e = err(Liveness, json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Name", "value": "a"}]}}));
    assert!(e.contains("httpHeaders[0].name"), "{e}");
    let e = err(Liveness, json!({"httpGet": {"port": 80, "path": "/a b"}}));
    assert!(e.contains("httpGet.path"), "{e}");
    // structs with the unsupported handler, for completeness
    let p = Probe { grpc: Some(GRPCAction { port: 1, service: None }), ..Default::default() };
    assert!(matches!(ProbeSpec::from_k8s(Liveness, &p, &[]), Err(ProbeError::Unsupported { .. })));
    let p = Probe {
        exec: Some(ExecAction { command: Some(vec!["x".into()]) }),
        http_get: Some(HTTPGetAction {
            http_headers: Some(vec![HTTPHeader { name: "a".into(), value: "b".into() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(matches!(ProbeSpec::from_k8s(Liveness, &p, &[]), Err(ProbeError::Invalid { .. })));
}

fn timing(delay: u64, period: u64, success: u32, failure: u32) -> Timing {
    Timing { initial_delay: S(delay), period: S(period), timeout: S(1), success_threshold: success, failure_threshold: failure }
}

fn fail() -> Outcome {
    Outcome::Failure("boom".into())
}

#[test]
fn schedule_follows_initial_delay_and_period() {
    let t0 = Instant::now();
    let mut p = Prober::new(ProbeKind::Liveness, timing(5, 10, 1, 3), t0);
    assert_eq!(p.next_due(), Some(t0 + S(5)));
    assert!(!p.is_due(t0 + S(4)));
    assert!(p.is_due(t0 + S(5)));
    // a check that took 1 s: the next is one period after the previous was due
    assert_eq!(p.record(t0 + S(6), &Outcome::Success), None);
    assert_eq!(p.next_due(), Some(t0 + S(15)));
    // a check that overran the period: the next runs at once
    assert_eq!(p.record(t0 + S(27), &Outcome::Success), None);
    assert_eq!(p.next_due(), Some(t0 + S(27)));
}

#[test]
fn liveness_fails_after_failure_threshold_in_a_row_and_stops() {
    let t0 = Instant::now();
    let mut p = Prober::new(ProbeKind::Liveness, timing(0, 1, 1, 3), t0);
    assert!(p.passing());
    assert_eq!(p.record(t0, &fail()), None);
    assert_eq!(p.record(t0 + S(1), &fail()), None);
    // a success in between starts the count again
    assert_eq!(p.record(t0 + S(2), &Outcome::Success), None);
    assert_eq!(p.record(t0 + S(3), &fail()), None);
    assert_eq!(p.record(t0 + S(4), &fail()), None);
    assert!(p.passing());
    assert_eq!(p.record(t0 + S(5), &fail()), Some(Transition::Failed { message: "boom".into() }));
    assert!(!p.passing());
    assert_eq!(p.next_due(), None);
    assert!(!p.is_due(t0 + S(100)));
    // nothing more is reported for this container
    assert_eq!(p.record(t0 + S(6), &fail()), None);
}

#[test]
fn readiness_starts_not_ready_and_flips_on_thresholds() {
    let t0 = Instant::now();
    let mut p = Prober::new(ProbeKind::Readiness, timing(0, 1, 2, 2), t0);
    assert!(!p.passing());
    assert_eq!(p.record(t0, &Outcome::Success), None);
    assert_eq!(p.record(t0 + S(1), &Outcome::Success), Some(Transition::Ready));
    assert_eq!(p.record(t0 + S(2), &Outcome::Success), None);
    assert!(p.passing());
    assert_eq!(p.record(t0 + S(3), &fail()), None);
    assert_eq!(p.record(t0 + S(4), &fail()), Some(Transition::NotReady { message: "boom".into() }));
    assert_eq!(p.record(t0 + S(5), &fail()), None);
    assert!(!p.passing());
    // readiness keeps probing
    assert_eq!(p.next_due(), Some(t0 + S(6)));
    assert_eq!(p.record(t0 + S(6), &Outcome::Success), None);
    assert_eq!(p.record(t0 + S(7), &Outcome::Success), Some(Transition::Ready));
}

#[test]
fn startup_reports_started_once_or_failed() {
    let t0 = Instant::now();
    let mut p = Prober::new(ProbeKind::Startup, timing(0, 1, 1, 2), t0);
    assert!(!p.passing());
    assert_eq!(p.record(t0, &fail()), None);
    assert_eq!(p.record(t0 + S(1), &Outcome::Success), Some(Transition::Started));
    assert_eq!(p.next_due(), None);
    let mut p = Prober::new(ProbeKind::Startup, timing(0, 1, 1, 2), t0);
    assert_eq!(p.record(t0, &fail()), None);
    assert_eq!(p.record(t0 + S(1), &fail()), Some(Transition::Failed { message: "boom".into() }));
    assert_eq!(p.next_due(), None);
}

fn specs(kinds: &[(ProbeKind, Timing)]) -> Vec<ProbeSpec> {
    kinds
        .iter()
        .map(|(kind, timing)| ProbeSpec {
            kind: *kind,
            action: ProbeAction::Exec { command: vec!["true".into()] },
            timing: *timing,
            termination_grace_period: None,
        })
        .collect()
}

#[test]
fn startup_probe_holds_the_others_back() {
    use ProbeKind::*;
    let t0 = Instant::now();
    let mut c = ContainerProbes::new(
        &specs(&[(Startup, timing(0, 1, 1, 30)), (Liveness, timing(2, 5, 1, 1)), (Readiness, timing(0, 3, 1, 1))]),
        t0,
    );
    assert!(!c.started() && !c.ready());
    assert_eq!(c.due(t0), vec![Startup]);
    assert_eq!(c.record(Startup, t0, &fail()), None);
    // liveness would be due at t0+2 but waits for the startup probe
    assert_eq!(c.due(t0 + S(4)), vec![Startup]);
    assert_eq!(c.next_due(), Some(t0 + S(1)));
    assert_eq!(c.record(Startup, t0 + S(4), &Outcome::Success), Some(Transition::Started));
    assert!(c.started() && !c.ready());
    assert_eq!(c.due(t0 + S(4)), vec![Liveness, Readiness]);
    assert_eq!(c.record(Readiness, t0 + S(4), &Outcome::Success), Some(Transition::Ready));
    assert!(c.ready());
    assert_eq!(c.record(Liveness, t0 + S(4), &fail()), Some(Transition::Failed { message: "boom".into() }));
    assert_eq!(c.due(t0 + S(100)), vec![Readiness]);
}

#[test]
fn without_probes_a_container_is_ready_and_nothing_is_due() {
    let t0 = Instant::now();
    let c = ContainerProbes::new(&[], t0);
    assert!(c.started() && c.ready());
    assert_eq!(c.next_due(), None);
    assert!(c.due(t0 + S(1)).is_empty());
    let c = ContainerProbes::new(&specs(&[(ProbeKind::Liveness, timing(3, 1, 1, 1))]), t0);
    assert!(c.ready());
    assert_eq!(c.next_due(), Some(t0 + S(3)));
}

#[test]
fn specs_of_a_manifest_container() {
    let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(json!({
        "name": "web",
        "ports": [{"name": "http", "containerPort": 8080}],
        "livenessProbe": {"httpGet": {"port": "http", "path": "/live"}},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
    }))
    .unwrap();
    let specs = specs_of(&c).unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].kind, ProbeKind::Liveness);
    assert!(matches!(specs[0].action, ProbeAction::HttpGet { port: 8080, .. }));
    assert_eq!(specs[1].kind, ProbeKind::Readiness);
    assert_eq!(specs[1].timing.period, S(2));
    let c: k8s_openapi::api::core::v1::Container =
        serde_json::from_value(json!({"name": "x", "startupProbe": {"grpc": {"port": 1}}})).unwrap();
    assert!(specs_of(&c).unwrap_err().to_string().starts_with("startupProbe.grpc is not supported"));
    assert!(specs_of(&k8s_openapi::api::core::v1::Container::default()).unwrap().is_empty());
}
