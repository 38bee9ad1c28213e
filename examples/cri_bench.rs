//! CRI latency and memory benchmark, run by `make bench` against `hull
//! daemon` and Debian's containerd (its CRI plugin with runc), one after
//! the other with the same client, so the figures compare.
//!
//!   cri_bench --socket PATH --label NAME --image REF [--pods 20]
//!             [--rounds 10] [--daemon-pid PID] [--out FILE.json]
//!
//! Each round runs the whole pod life cycle (RunPodSandbox, CreateContainer,
//! StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox) for one pod, then for `--pods` pods at once; every step
//! is timed on its own. Pods use the node's network namespace (no CNI in
//! either runtime: the figures are the runtimes'), and containers are
//! stopped with timeout 0 (SIGKILL at once, the same in both). With
//! `--daemon-pid`, the daemon's RSS idle and with 10 pods is read, and the
//! per-pod overhead (all processes' Pss with 10 pods minus without, per pod).
//!
//! Then exec, in one running container: `ExecSync` of `true` and a
//! streaming exec of `true` (the Exec RPC, the SPDY/3.1 upgrade at its URL,
//! remotecommand v4 streams, the exit status: what crictl exec and the
//! kubelet do), `--exec-iters` times each (p50/p99), and the throughput of
//! a streaming exec writing `--exec-mb` MiB to stdout (the best of 3).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// The tests' hand-driven SPDY/3.1 client (remotecommand as crictl speaks
/// it), shared rather than written twice.
#[path = "../tests/stream_common/mod.rs"]
mod stream_common;

const STEPS: [&str; 7] =
    ["RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"];
/// Every call is bounded: a hung runtime fails the bench, it does not stall it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    socket: PathBuf,
    label: String,
    image: String,
    pods: usize,
    rounds: usize,
    daemon_pid: Option<i32>,
    out: Option<PathBuf>,
    /// Substrings of the command lines of the per-pod processes a runtime
    /// adds besides the containers' own (hull: holder and monitors;
    /// containerd: shim and pause).
    overhead: Vec<String>,
    exec_iters: usize,
    exec_mb: usize,
}

fn args() -> Args {
    let mut a = Args {
        socket: PathBuf::new(),
        label: String::new(),
        image: String::new(),
        pods: 20,
        rounds: 10,
        daemon_pid: None,
        out: None,
        overhead: Vec::new(),
        exec_iters: 50,
        exec_mb: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--socket" => a.socket = v().into(),
            "--label" => a.label = v(),
            "--image" => a.image = v(),
            "--pods" => a.pods = v().parse().expect("--pods"),
            "--rounds" => a.rounds = v().parse().expect("--rounds"),
            "--daemon-pid" => a.daemon_pid = Some(v().parse().expect("--daemon-pid")),
            "--out" => a.out = Some(v().into()),
            "--overhead" => a.overhead.push(v()),
            "--exec-iters" => a.exec_iters = v().parse().expect("--exec-iters"),
            "--exec-mb" => a.exec_mb = v().parse().expect("--exec-mb"),
            _ => panic!("unknown argument {k}"),
        }
    }
    assert!(!a.socket.as_os_str().is_empty() && !a.image.is_empty(), "--socket and --image are required");
    assert!(a.exec_iters > 0 && a.exec_iters <= 100_000, "--exec-iters: 1 to 100000");
    assert!(a.exec_mb > 0 && a.exec_mb <= 4096, "--exec-mb: 1 to 4096");
    a
}

async fn connect(socket: PathBuf) -> RuntimeServiceClient<Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let s = socket.clone();
            async move { tokio::net::UnixStream::connect(s).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect to the CRI socket");
    RuntimeServiceClient::new(channel)
}

async fn timed<T, F>(times: &mut BTreeMap<&'static str, Vec<f64>>, step: &'static str, f: F) -> T
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let t = Instant::now();
    let r = tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{step}: no answer in {CALL_TIMEOUT:?}"));
    let r = r.unwrap_or_else(|e| panic!("{step}: {e}"));
    times.entry(step).or_default().push(t.elapsed().as_secs_f64() * 1000.0);
    r.into_inner()
}

fn sandbox_config(name: &str, logs: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata { name: name.into(), uid: format!("uid-{name}"), namespace: "bench".into(), attempt: 0 }),
        hostname: String::new(),
        log_directory: format!("{logs}/{name}"),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the kubelet sends for a host-network pod's container.
fn container_config(image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "c".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
        command: vec!["sleep".into(), "3600".into()],
        log_path: "c.log".into(),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext { namespace_options: Some(namespaces()), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A pod of its own with one started container, each step timed: the
/// sandbox id and the container id.
async fn start_pod(
    c: &mut RuntimeServiceClient<Channel>,
    t: &mut BTreeMap<&'static str, Vec<f64>>,
    name: &str,
    image: &str,
    logs: &str,
) -> (String, String) {
    let config = sandbox_config(name, logs);
    let run = cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() };
    let sb = timed(t, "RunPodSandbox", c.run_pod_sandbox(run)).await.pod_sandbox_id;
    let create =
        cri::CreateContainerRequest { pod_sandbox_id: sb.clone(), config: Some(container_config(image)), sandbox_config: Some(config) };
    let id = timed(t, "CreateContainer", c.create_container(create)).await.container_id;
    timed(t, "StartContainer", c.start_container(cri::StartContainerRequest { container_id: id.clone() })).await;
    (sb, id)
}

/// One pod's whole life, each step timed.
async fn lifecycle(mut c: RuntimeServiceClient<Channel>, name: String, image: String, logs: String) -> BTreeMap<&'static str, Vec<f64>> {
    let mut t = BTreeMap::new();
    let (sb, id) = start_pod(&mut c, &mut t, &name, &image, &logs).await;
    timed(&mut t, "StopContainer", c.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 0 })).await;
    timed(&mut t, "RemoveContainer", c.remove_container(cri::RemoveContainerRequest { container_id: id })).await;
    timed(&mut t, "StopPodSandbox", c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sb.clone() })).await;
    timed(&mut t, "RemovePodSandbox", c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb })).await;
    t
}

fn merge(into: &mut BTreeMap<&'static str, Vec<f64>>, from: BTreeMap<&'static str, Vec<f64>>) {
    for (k, v) in from {
        into.entry(k).or_default().extend(v);
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn pss_kib(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Pids with their command lines (NULs as spaces).
fn processes() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if pid.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                m.insert(pid, String::from_utf8_lossy(&c).replace('\0', " "));
            }
        }
    }
    m
}

/// Memory with 10 pods running: the daemon's RSS, and the Pss all
/// processes gained per pod.
async fn memory(c: &RuntimeServiceClient<Channel>, a: &Args, logs: &str) -> serde_json::Value {
    let Some(pid) = a.daemon_pid else { return serde_json::Value::Null };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    let before = processes();
    let mut pods = Vec::new();
    let mut cl = c.clone();
    let mut t = BTreeMap::new();
    for i in 0..10 {
        let name = format!("{}-mem-{i}", a.label);
        let (sb, _) = start_pod(&mut cl, &mut t, &name, &a.image, logs).await;
        pods.push(sb);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = rss_kib(pid);
    let added: Vec<(String, String)> = processes()
        .into_iter()
        .filter(|(p, c)| !before.contains_key(p) && *p != pid.to_string() && a.overhead.iter().any(|o| c.contains(o.as_str())))
        .collect();
    let overhead: u64 = added.iter().map(|(p, _)| pss_kib(p)).sum();
    for sb in pods {
        timed(&mut t, "StopPodSandbox", cl.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sb.clone() })).await;
        timed(&mut t, "RemovePodSandbox", cl.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb })).await;
    }
    serde_json::json!({
        "daemon_rss_idle_kib": idle,
        "daemon_rss_10_pods_kib": with,
        "per_pod_processes": added.len() as f64 / 10.0,
        "per_pod_overhead_pss_kib": overhead / 10,
    })
}

/// One streaming exec as crictl does it: the Exec RPC, then SPDY at its
/// URL; the command's stdout length and the Status JSON's status.
async fn stream_exec(c: &mut RuntimeServiceClient<Channel>, id: &str, cmd: &[&str]) -> (usize, String) {
    let req = cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let url = tokio::time::timeout(CALL_TIMEOUT, c.exec(req))
        .await
        .expect("Exec: no answer")
        .expect("Exec")
        .into_inner()
        .url;
    let mut s = stream_common::Client::connect(&url, "v4.channel.k8s.io").await;
    s.reset_ends = true;
    let error = s.open(&[("streamType", "error")]).await;
    let stdout = s.open(&[("streamType", "stdout")]).await;
    s.open(&[("streamType", "stderr")]).await;
    let got = tokio::time::timeout(CALL_TIMEOUT, s.collect(error)).await.expect("streaming exec: no end");
    let status = stream_common::status_json(&got[&error])["status"].as_str().unwrap_or("").to_string();
    (got.get(&stdout).map_or(0, Vec::len), status)
}

/// ExecSync and streaming exec latency, and streaming exec throughput, in
/// one container of a pod of its own.
async fn exec_bench(a: &Args, logs: &str) -> serde_json::Value {
    let mut c = connect(a.socket.clone()).await;
    let mut t = BTreeMap::new();
    let name = format!("{}-exec", a.label);
    let (sb, id) = start_pod(&mut c, &mut t, &name, &a.image, logs).await;
    let sync =
        |cmd: &[&str]| cri::ExecSyncRequest { container_id: id.clone(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 60 };
    // Warm up both paths (page cache, the streaming server's first connection).
    for _ in 0..3 {
        timed(&mut t, "warm", c.exec_sync(sync(&["true"]))).await;
        stream_exec(&mut c, &id, &["true"]).await;
    }
    let mut lat = BTreeMap::new();
    for _ in 0..a.exec_iters {
        let r = timed(&mut lat, "ExecSync", c.exec_sync(sync(&["true"]))).await;
        assert_eq!(r.exit_code, 0, "ExecSync true: {}", String::from_utf8_lossy(&r.stderr));
        let t0 = Instant::now();
        let (_, status) = stream_exec(&mut c, &id, &["true"]).await;
        assert_eq!(status, "Success", "streaming exec of true");
        lat.entry("Exec").or_default().push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let bytes = a.exec_mb * 1024 * 1024;
    let script = format!("head -c {bytes} /dev/zero");
    let mut best = 0f64;
    for _ in 0..3 {
        let t0 = Instant::now();
        let (n, status) = stream_exec(&mut c, &id, &["sh", "-c", &script]).await;
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!((n, status.as_str()), (bytes, "Success"), "streaming exec of {} MiB", a.exec_mb);
        best = best.max(bytes as f64 / (1024.0 * 1024.0) / secs);
    }
    timed(&mut t, "StopPodSandbox", c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sb.clone() })).await;
    timed(&mut t, "RemovePodSandbox", c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb })).await;
    let mut steps = serde_json::Map::new();
    for (k, v) in lat.iter_mut() {
        steps.insert(k.to_string(), serde_json::json!({ "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99) }));
    }
    serde_json::json!({ "iters": a.exec_iters, "latency": steps, "stream_mb": a.exec_mb, "stream_mib_per_s": best })
}

/// Remove every pod of the bench's namespace (what a failed run left).
async fn remove_all(mut c: RuntimeServiceClient<Channel>) {
    let Ok(list) = c.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await else { return };
    for p in list.into_inner().items {
        if p.metadata.as_ref().is_some_and(|m| m.namespace == "bench") {
            let _ = c.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: p.id.clone() }).await;
            let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: p.id }).await;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let c = connect(a.socket.clone()).await;
    let run = tokio::spawn(bench(a, c.clone())).await;
    remove_all(c).await;
    if run.is_err() {
        // The panic's message is already printed.
        std::process::exit(1);
    }
}

async fn bench(mut a: Args, c: RuntimeServiceClient<Channel>) {
    // Names unique to this run: a runtime keeps the names of what an
    // earlier, failed run left behind.
    a.label = format!("{}-{}", a.label, std::process::id());
    let logs = std::env::temp_dir().join(format!("cri-bench-logs-{}", std::process::id())).display().to_string();
    std::fs::create_dir_all(&logs).unwrap();
    // Warm up (first pulls of layers into caches, first cgroup creation).
    lifecycle(c.clone(), format!("{}-warm", a.label), a.image.clone(), logs.clone()).await;
    let mut single = BTreeMap::new();
    let mut parallel = BTreeMap::new();
    for r in 0..a.rounds {
        merge(&mut single, lifecycle(c.clone(), format!("{}-s{r}", a.label), a.image.clone(), logs.clone()).await);
        let tasks: Vec<_> = (0..a.pods)
            .map(|i| tokio::spawn(lifecycle(c.clone(), format!("{}-p{r}-{i}", a.label), a.image.clone(), logs.clone())))
            .collect();
        for t in tasks {
            merge(&mut parallel, t.await.expect("a pod's life cycle failed"));
        }
    }
    let mem = memory(&c, &a, &logs).await;
    let exec = exec_bench(&a, &logs).await;
    let _ = std::fs::remove_dir_all(&logs);
    let mut steps = serde_json::Map::new();
    for s in STEPS {
        let one = single.get_mut(s).unwrap();
        let many = parallel.get_mut(s).unwrap();
        steps.insert(
            s.into(),
            serde_json::json!({
                "p50_ms": pct(one, 0.5), "p99_ms": pct(one, 0.99),
                "concurrent_p50_ms": pct(many, 0.5), "concurrent_p99_ms": pct(many, 0.99),
            }),
        );
    }
    let out = serde_json::json!({ "runtime": a.label, "pods": a.pods, "rounds": a.rounds, "steps": steps, "memory": mem, "exec": exec });
    println!("{out}");
    if let Some(p) = &a.out {
        std::fs::write(p, out.to_string()).unwrap();
    }
}
