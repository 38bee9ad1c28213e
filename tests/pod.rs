//! `hull pod`: Kubernetes Pod manifests run without a kubelet.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// One pod under test: its own hull root and manifest; removed on drop.
struct PodEnv {
    root: tempfile::TempDir,
    name: String,
}

impl PodEnv {
    fn new(name: &str) -> PodEnv {
        let root = tempfile::Builder::new().prefix("hull-pod-t").tempdir_in("/tmp").unwrap();
        PodEnv { root, name: unique_id(name).replace('_', "-").to_lowercase() }
    }

    fn hull(&self, args: &[&str]) -> Output {
        run_cmd(&mut self.cmd(args), Duration::from_secs(60))
    }

    /// `hull --root ROOT ARGS` with this env's state directory.
    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root").arg(self.root.path()).env("HULL_STATE_DIR", self.state_dir()).args(args);
        cmd
    }

    /// Write the manifest (ROOTFS and NAME substituted) and `pod run` it,
    /// with no CNI network (loopback only) unless `cni_dir` says otherwise.
    fn run(&self, manifest: &str) -> Output {
        let empty = self.root.path().join("no-cni");
        std::fs::create_dir_all(&empty).unwrap();
        self.run_with_cni(manifest, &empty)
    }

    fn run_with_cni(&self, manifest: &str, cni_dir: &Path) -> Output {
        self.run_full(manifest, cni_dir, &["--backoff-base-ms", "100"])
    }

    fn run_full(&self, manifest: &str, cni_dir: &Path, flags: &[&str]) -> Output {
        let text = manifest.replace("ROOTFS", rootfs().to_str().unwrap()).replace("NAME", &self.name);
        let path = self.root.path().join("pod.yaml");
        std::fs::write(&path, text).unwrap();
        let state = self.state_dir();
        let mut args = vec!["pod", "run", "--state-dir", state.to_str().unwrap(), "--cni-conf-dir", cni_dir.to_str().unwrap()];
        args.extend_from_slice(flags);
        args.push(path.to_str().unwrap());
        self.hull(&args)
    }

    /// This env's `--state-dir` (pod records, logs, emptyDirs on disk).
    fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// The pod's directory under the state directory (record, logs).
    fn pod_dir(&self) -> PathBuf {
        self.state_dir().join("pod-records").join(&self.name)
    }

    /// The pod's runtime files under the root (lock, FIFO).
    fn pod_run_dir(&self) -> PathBuf {
        self.root.path().join("pod-run/pods").join(&self.name)
    }

    fn record(&self) -> serde_json::Value {
        let p = self.pod_dir().join("pod.json");
        serde_json::from_str(&read_all(&p)).unwrap_or(serde_json::Value::Null)
    }

    /// `pod ps -o json`: the record with what the runtime knows of the
    /// sandbox (ips, holderPid).
    fn view(&self) -> serde_json::Value {
        let o = self.hull(&["pod", "ps", "-o", "json", &self.name]);
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// hull on the OCI state of the pods' runtime layer (their containers).
    fn oci(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root").arg(self.root.path().join("pod-run/oci")).args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    fn wait_phase(&self, phases: &[&str]) -> String {
        let mut phase = String::new();
        wait_for(&format!("pod phase in {phases:?}"), Duration::from_secs(60), || {
            phase = self.record()["phase"].as_str().unwrap_or("").to_string();
            phases.contains(&phase.as_str())
        });
        phase
    }

    fn logs(&self, container: &str) -> String {
        let o = self.hull(&["pod", "logs", &self.name, "-c", container]);
        assert_ok(&o);
        s(&o.stdout)
    }

    fn uid(&self) -> String {
        self.record()["uid"].as_str().unwrap_or("no-uid").to_string()
    }

    /// Remove the pod and check that nothing of it is left on the host.
    fn remove_and_check(&self) {
        let uid = self.uid();
        let holder = self.view()["holderPid"].as_i64();
        assert_ok(&self.hull(&["pod", "rm", &self.name]));
        let root = self.root.path().to_str().unwrap().to_string();
        wait_for("pod resources gone", Duration::from_secs(5), || pod_leftovers(&root, &uid, holder).is_empty());
        assert!(!self.pod_dir().exists() && !self.pod_run_dir().exists(), "pod dir left");
        assert!(!self.state_dir().join("pods").join(&uid).exists(), "pod state dir (emptyDirs) left");
    }
}

impl Drop for PodEnv {
    /// Remove every pod under this env's root, in whatever namespace a
    /// test (perhaps failing half-way) made it: outside `default` a pod's
    /// directory is `NS_NAME`.
    fn drop(&mut self) {
        let _ = self.hull(&["pod", "rm", &self.name]);
        let dirs = std::fs::read_dir(self.state_dir().join("pod-records")).into_iter().flatten().flatten();
        for d in dirs {
            let key = d.file_name().to_string_lossy().to_string();
            let _ = match key.split_once('_') {
                Some((ns, name)) => self.hull(&["pod", "rm", "-n", ns, name]),
                None => self.hull(&["pod", "rm", &key]),
            };
        }
    }
}

fn pod_leftovers(root: &str, uid: &str, holder: Option<i64>) -> Vec<String> {
    let mut out = Vec::new();
    for l in read_all(Path::new("/proc/self/mountinfo")).lines() {
        if l.contains(root) {
            out.push(format!("mount: {l}"));
        }
    }
    for base in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p: PathBuf = base.path().join(format!("hull-pod-{uid}"));
        if p.exists() {
            out.push(format!("cgroup: {}", p.display()));
        }
    }
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else { continue };
        let stat = read_all(&e.path().join("stat"));
        if stat.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')) {
            continue;
        }
        let cmd = s(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        if cmd.contains(root) || Some(pid) == holder {
            out.push(format!("process {pid}: {cmd}"));
        }
    }
    out
}

const SHARED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  hostname: shared-host
  restartPolicy: Never
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - name: a
    image: ROOTFS
    command: [sh, -c]
    args:
    - |
      hostname
      for n in net ipc uts mnt; do echo "$n $(readlink /proc/self/ns/$n)"; done
      touch /tmp/only-in-a 2>/dev/null || mkdir -p /only-in-a
      touch /dev/mqueue/hull-ipc-check
      nc -l -p 7070 -e echo pong &
      echo from-a > /shared/msg
      sleep 6
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: b
    image: ROOTFS
    command: [sh, -c]
    args:
    - |
      hostname
      for n in net ipc uts mnt; do echo "$n $(readlink /proc/self/ns/$n)"; done
      for i in $(seq 1 50); do [ -f /shared/msg ] && break; sleep 0.1; done
      echo "read $(cat /shared/msg)"
      for i in $(seq 1 50); do r=$(nc 127.0.0.1 7070 </dev/null) && [ -n "$r" ] && break; sleep 0.1; done
      echo "net $r"
      if [ -e /tmp/only-in-a ] || [ -e /only-in-a ]; then echo sees-a-files; else echo own-filesystem; fi
      ls /dev/mqueue
    volumeMounts: [{name: shared, mountPath: /shared, readOnly: true}]
"#;

#[test]
fn containers_share_hostname_network_ipc_and_an_empty_dir() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("shared");
    let o = env.run(SHARED);
    assert_ok(&o);
    assert_eq!(env.wait_phase(&["Succeeded", "Failed"]), "Succeeded", "{}", show(&env.hull(&["pod", "ps", &env.name])));
    let a = env.logs("a");
    let b = env.logs("b");
    let ns = |log: &str, n: &str| log.lines().find(|l| l.starts_with(&format!("{n} "))).unwrap_or("").to_string();
    assert!(a.starts_with("shared-host\n") && b.starts_with("shared-host\n"), "{a}\n{b}");
    for n in ["net", "ipc", "uts"] {
        assert_eq!(ns(&a, n), ns(&b, n), "{n} namespace differs:\n{a}\n{b}");
    }
    assert_ne!(ns(&a, "mnt"), ns(&b, "mnt"), "containers share a mount namespace");
    assert!(b.contains("read from-a"), "{b}");
    assert!(b.contains("net pong"), "{b}");
    assert!(b.contains("own-filesystem"), "{b}");
    // A POSIX message queue a made is visible to b: the same IPC namespace.
    assert!(b.contains("hull-ipc-check"), "{b}");
    env.remove_and_check();
}

#[test]
fn shared_process_namespace_shows_the_other_containers_processes() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("sharepid");
    let o = env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: ROOTFS, command: [sleep, "300"]}
  - name: b
    image: ROOTFS
    command: [sh, -c, 'i=0; until ps -o args | grep -q "[s]leep 300" || [ $i -ge 1200 ]; do i=$((i+1)); sleep 0.1; done; ps -o pid,args | grep -c "[s]leep 300"; echo pid1 $(cat /proc/1/comm)']
"#,
    );
    assert_ok(&o);
    // b looks for a's process for up to 2 minutes (the two start in
    // either order), then ends; a sleeps on until the removal.
    wait_for("b's end", Duration::from_secs(180), || env.record()["containers"][1]["state"] == "Terminated");
    let b = env.logs("b");
    assert!(b.starts_with("1\n"), "b should see a's sleep: {b}");
    assert!(b.contains("pid1 hull-pause"), "the holder is pid 1: {b}");
    env.remove_and_check();
}

#[test]
fn host_path_writes_reach_the_host_and_read_only_is_enforced() {
    if !require_root() || is_runc() {
        return;
    }
    let host = host_tempdir("hull-hostpath");
    let env = PodEnv::new("hostpath");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  volumes:
  - {name: h, hostPath: {path: HOST, type: Directory}}
  - {name: made, hostPath: {path: HOST/made, type: DirectoryOrCreate}}
  containers:
  - name: c
    image: ROOTFS
    command: [sh, -c, 'echo written > /rw/file; echo x > /ro/other && echo ro-write-worked || echo ro-refused; ls -d /made']
    volumeMounts:
    - {name: h, mountPath: /rw}
    - {name: h, mountPath: /ro, readOnly: true}
    - {name: made, mountPath: /made}
"#
    .replace("HOST", host.path().to_str().unwrap());
    assert_ok(&env.run(&manifest));
    env.wait_phase(&["Succeeded", "Failed"]);
    assert_eq!(read_all(&host.path().join("file")), "written\n");
    assert!(host.path().join("made").is_dir());
    assert!(env.logs("c").contains("ro-refused"), "{}", env.logs("c"));
    env.remove_and_check();
}

#[test]
fn host_path_type_mismatch_and_subpath_escape_are_refused() {
    if !require_root() || is_runc() {
        return;
    }
    let host = host_tempdir("hull-subpath");
    std::os::unix::fs::symlink("/etc", host.path().join("evil")).unwrap();
    let env = PodEnv::new("subpath");
    let base = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  volumes: [{name: h, hostPath: {path: HOST, type: TYPE}}]
  containers:
  - name: c
    image: ROOTFS
    command: [cat, /x/passwd]
    volumeMounts: [{name: h, mountPath: /x, subPath: evil}]
"#
    .replace("HOST", host.path().to_str().unwrap());
    let o = env.run(&base.replace("TYPE", "Directory"));
    assert_fails_mentioning(&o, &["subPath", "outside"]);
    assert!(!env.pod_dir().exists());
    let o = env.run(&base.replace("TYPE", "File"));
    assert_fails_mentioning(&o, &["is not a file"]);
    assert!(pod_leftovers(env.root.path().to_str().unwrap(), "none", None).is_empty());
}

#[test]
fn unsupported_manifest_fields_are_named() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("badfield");
    let o = env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - name: c
    image: ROOTFS
    command: [true]
    lifecycle: {preStop: {exec: {command: [x]}}}
"#,
    );
    assert_fails_mentioning(&o, &["spec.containers[0].lifecycle"]);
    assert!(!env.pod_dir().exists());
    let o = env.run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  nodeName: x\n  restartPolicy: Never\n  containers: [{name: c, image: ROOTFS, command: ['true']}]\n");
    assert_ok(&o);
    assert!(s(&o.stderr).contains("spec.nodeName is ignored"), "{}", show(&o));
    env.remove_and_check();
}

#[test]
fn failed_container_restarts_with_back_off_and_logs_are_cri_format() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("restart");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'echo attempt; echo oops >&2; exit 3']}
"#,
    ));
    wait_for("two restarts", Duration::from_secs(20), || env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 2);
    let ps = s(&env.hull(&["pod", "ps", &env.name]).stdout);
    assert!(ps.contains(" 3 "), "exit code 3 in ps: {ps}");
    let log = read_all(&env.pod_dir().join("logs/c/0.log"));
    let re_ok = log.lines().all(|l| {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        parts.len() == 4
            && humantime::parse_rfc3339(parts[0]).is_ok()
            && ["stdout", "stderr"].contains(&parts[1])
            && ["F", "P"].contains(&parts[2])
    });
    assert!(re_ok && log.contains(" stdout F attempt") && log.contains(" stderr F oops"), "{log}");
    env.remove_and_check();
}

#[test]
fn containers_survive_a_killed_supervisor_and_their_exits_are_seen() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("survive");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'sleep 1.5; exit 7']}
"#,
    ));
    let sup = env.record()["supervisorPid"].as_i64().unwrap();
    assert!(sup > 0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let id = env.record()["containers"][0]["containerId"].as_str().unwrap().to_string();
    let st = env.oci(&["state", &id]);
    assert!(s(&st.stdout).contains("\"running\""), "container should still run: {}", show(&st));
    wait_for("exit 7 in ps", Duration::from_secs(10), || s(&env.hull(&["pod", "ps", &env.name]).stdout).contains(" 7 "));
    env.remove_and_check();
}

#[test]
fn failing_liveness_probe_replaces_the_container() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("liveness");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  volumes: [{name: w, emptyDir: {}}]
  containers:
  - name: c
    image: ROOTFS
    # Only the first attempt turns unhealthy: the new one stays ready (a
    # loaded machine need not catch a short healthy window).
    command: [sh, -c, 'touch /tmp/healthy; if [ ! -e /w/once ]; then touch /w/once; sleep 1; rm /tmp/healthy; fi; exec sleep 1000']
    volumeMounts: [{name: w, mountPath: /w}]
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: ['true']}
      periodSeconds: 1
"#,
    ));
    let first = env.record()["containers"][0]["containerId"].as_str().unwrap_or("").to_string();
    wait_for("a restart after the liveness failure", Duration::from_secs(20), || {
        env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    let rec = env.record();
    let c = &rec["containers"][0];
    assert_eq!(c["lastExit"]["exitCode"], 137, "{c}");
    assert_eq!(c["attempt"], 1, "{c}");
    assert!(!first.is_empty() && c["containerId"].as_str().unwrap() != first, "a new container: {c}");
    // The old container is gone, the new one runs.
    assert_fails(&env.oci(&["state", &first]));
    wait_for("new container ready", Duration::from_secs(30), || env.record()["containers"][0]["ready"] == true);
    env.remove_and_check();
}

#[test]
fn bad_probe_is_refused_naming_the_field() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("badprobe");
    let o = env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - name: c
    image: ROOTFS
    command: [sleep, "10"]
    livenessProbe: {tcpSocket: {port: 70000}}
"#,
    );
    assert_fails_mentioning(&o, &["livenessProbe", "port"]);
    assert!(!env.pod_dir().exists());
}

/// The pod on a CNI bridge of the test's own (own bridge name, subnet and
/// IPAM dir): the host reaches the pod's IP, a hostPort mapping works, and
/// after `pod rm` no veth or portmap rule is left. Traffic goes only to the
/// pod's own address and the test bridge's.
#[test]
fn cni_bridge_gives_the_pod_an_ip_and_host_ports_work() {
    if !require_root() || is_runc() {
        return;
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped: containernetworking-plugins not installed");
        return;
    }
    let pid = std::process::id();
    let bridge = format!("hpod{}", pid % 100000);
    let subnet_octet = 100 + pid % 50;
    let forward_before = read_all(Path::new("/proc/sys/net/ipv4/ip_forward"));
    let env = PodEnv::new("cni");
    let cni = env.root.path().join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    let net_name = format!("hullpodtest{pid}");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": net_name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "dataDir": env.root.path().join("ipam"),
                      "ranges": [[{"subnet": format!("172.31.{subnet_octet}.0/24")}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(cni.join("10-test.conflist"), conf.to_string()).unwrap();
    let host_port = 31000 + (pid % 2000) as u16;
    let o = env.run_with_cni(
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: NAME}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: srv
    image: ROOTFS
    command: [sh, -c, 'while true; do echo pong | nc -l -p 8080; done']
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
"#
        ),
        &cni,
    );
    let cleanup = || {
        let _ = std::process::Command::new("ip").args(["link", "del", &bridge]).status();
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &forward_before);
    };
    if !o.status.success() {
        cleanup();
        panic!("{}", show(&o));
    }
    let ip: std::net::IpAddr = env.view()["ips"][0].as_str().expect("pod IP").parse().unwrap();
    assert!(ip.to_string().starts_with(&format!("172.31.{subnet_octet}.")), "{ip}");
    let fetch = read_tcp;
    let direct = fetch(std::net::SocketAddr::new(ip, 8080));
    let gateway: std::net::IpAddr = format!("172.31.{subnet_octet}.1").parse().unwrap();
    let mapped = fetch(std::net::SocketAddr::new(gateway, host_port));
    let hosts = s(&env.hull(&["pod", "exec", &env.name, "--", "cat", "/etc/hosts"]).stdout);
    // Stopping the pod gives the network back (CNI DEL), before rm.
    let stopped = env.hull(&["pod", "stop", &env.name]);
    let veths_after_stop = s(&std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap()
        .stdout);
    let network_after_stop = env.view();
    env.remove_and_check();
    let veths = s(&std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap()
        .stdout);
    let rules = s(&std::process::Command::new("iptables-save").output().map(|o| o.stdout).unwrap_or_default());
    cleanup();
    assert_ok(&stopped);
    assert!(veths_after_stop.trim().is_empty(), "veth left after pod stop: {veths_after_stop}");
    assert!(network_after_stop["ips"].as_array().is_some_and(|a| a.is_empty()), "{network_after_stop}");
    assert_eq!(direct.trim(), "pong", "pod IP {ip}:8080");
    assert_eq!(mapped.trim(), "pong", "hostPort {host_port} via {gateway}");
    assert!(hosts.contains(&ip.to_string()), "{hosts}");
    assert!(veths.trim().is_empty(), "veth left on {bridge}: {veths}");
    assert!(!rules.contains(&format!("--dport {host_port} ")) && !rules.contains(&format!("--dports {host_port}")), "portmap rule left");
}

/// The fixture image (`hull-test:latest`) imported into a store of the
/// env's own; None (said skipped) when the fixture is missing.
fn imported_image(env: &PodEnv) -> Option<PathBuf> {
    let layout = rootfs().parent().unwrap().join("image-layout");
    if !layout.join("index.json").exists() {
        eprintln!("skipped: {} missing (make fixtures builds it)", layout.display());
        return None;
    }
    let image_root = env.root.path().join("images");
    let imp = std::process::Command::new(runtime())
        .arg("--image-root")
        .arg(&image_root)
        .args(["image", "import"])
        .arg(&layout)
        .output()
        .unwrap();
    assert_ok(&imp);
    Some(image_root)
}

/// `image:` names an image in hull's store: its rootfs is an overlay of the
/// image's snapshots, its config gives the working directory and command
/// defaults, and removal unmounts it and drops the store lease.
#[test]
fn pod_runs_an_image_from_the_store() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("image");
    let Some(image_root) = imported_image(&env) else { return };
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: "hull-test:latest", command: [sh, -c, 'echo cwd=$(pwd); touch /written-here; ls /written-here']}
  - {name: dflt, image: "hull-test:latest"}
"#
    .replace("NAME", &env.name);
    let path = env.root.path().join("pod.yaml");
    std::fs::write(&path, text).unwrap();
    let empty = env.root.path().join("no-cni");
    std::fs::create_dir_all(&empty).unwrap();
    let o = env
        .cmd(&[])
        .arg("--image-root")
        .arg(&image_root)
        .args(["pod", "run", "--cni-conf-dir", empty.to_str().unwrap(), path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&o);
    assert_eq!(env.wait_phase(&["Succeeded", "Failed"]), "Succeeded", "{}", show(&env.hull(&["pod", "ps", &env.name])));
    let log = env.logs("c");
    assert!(log.contains("cwd=/opt") && log.contains("/written-here"), "{log}");
    // No command: the image's Entrypoint + Cmd run.
    let release = read_all(&rootfs().join("etc/hull-release"));
    let dflt = env.logs("dflt");
    assert!(!dflt.trim().is_empty() && (release.is_empty() || dflt.contains(release.trim())), "{dflt}");
    let leases = || std::fs::read_dir(image_root.join("leases")).map(|d| d.count()).unwrap_or(0);
    env.remove_and_check();
    assert_eq!(leases(), 0, "image lease left after pod rm");
}

/// `limits: {memory: 128Mi, cpu: 500m}` become the container's cgroup
/// limits (seen from inside), the pod cgroup holds their sum, and a
/// container that goes past its memory limit is OOM-killed: exit 137,
/// reason OOMKilled.
#[test]
fn pod_limits_are_enforced() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("limits");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: steady
    image: ROOTFS
    command: [sh, -c, 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us; sleep 30']
    resources: {limits: {memory: 128Mi, cpu: 500m}}
  - name: hog
    image: ROOTFS
    command: [sh, -c, 'sleep 0.3; x=a; while true; do x=$x$x; done']
    resources: {limits: {memory: 64Mi, cpu: 500m}}
"#,
    ));
    wait_for("the hog's exit", Duration::from_secs(30), || !env.record()["containers"][1]["lastExit"].is_null());
    let rec = env.record();
    let hog = &rec["containers"][1];
    assert_eq!(hog["lastExit"]["exitCode"], 137, "{hog}");
    assert_eq!(hog["lastExit"]["reason"], "OOMKilled", "{hog}");
    let steady = env.logs("steady");
    assert_eq!(steady.split_whitespace().collect::<Vec<_>>(), ["134217728", "50000"], "{steady}");
    let uid = env.uid();
    let pod_mem = read_all(Path::new(&format!("/sys/fs/cgroup/memory/hull-pod-{uid}/memory.limit_in_bytes")));
    let pod_cpu = read_all(Path::new(&format!("/sys/fs/cgroup/cpu/hull-pod-{uid}/cpu.cfs_quota_us")));
    assert_eq!(pod_mem.trim(), (192u64 << 20).to_string());
    assert_eq!(pod_cpu.trim(), "100000");
    env.remove_and_check();
}

/// Init containers run in order, each to success, before the app
/// containers; `pod exec` runs in a container; `pod logs -f` follows until
/// the container ends; `pod stop` stops the pod.
#[test]
fn init_containers_exec_logs_follow_and_stop() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("initexec");
    assert_ok(&env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: w, emptyDir: {}}]
  initContainers:
  - {name: first, image: ROOTFS, command: [sh, -c, 'echo first >> /w/order'], volumeMounts: [{name: w, mountPath: /w}]}
  - {name: second, image: ROOTFS, command: [sh, -c, 'sleep 0.2; echo second >> /w/order'], volumeMounts: [{name: w, mountPath: /w}]}
  containers:
  - name: app
    image: ROOTFS
    command: [sh, -c, 'cat /w/order; echo app >> /w/order; i=0; while [ $i -lt 3 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; exec sleep 30']
    volumeMounts: [{name: w, mountPath: /w}]
"#));
    env.wait_phase(&["Running"]);
    let ls = s(&env.hull(&["pod", "ls"]).stdout);
    let row = ls.lines().find(|l| l.starts_with(&env.name)).unwrap_or("");
    assert!(row.contains("Running") && row.contains("1/1"), "pod ls:\n{ls}");
    // Running says the app started, not that it wrote its line yet: its
    // first tick comes after it did.
    wait_for("the app's first tick", Duration::from_secs(120), || env.logs("app").contains("tick 0"));
    let o = env.hull(&["pod", "exec", &env.name, "-c", "app", "--", "cat", "/w/order"]);
    assert_ok(&o);
    assert_eq!(s(&o.stdout), "first\nsecond\napp\n", "{}", show(&o));
    let o = env.hull(&["pod", "exec", &env.name, "--", "sh", "-c", "exit 5"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    // logs -f: returns once the container ends (stopped below).
    let mut follow = env.cmd(&["pod", "logs", "-f", &env.name]);
    follow.stdout(std::process::Stdio::piped());
    let child = follow.spawn().unwrap();
    wait_for("three ticks", Duration::from_secs(120), || env.logs("app").contains("tick 2"));
    assert_ok(&env.hull(&["pod", "stop", &env.name]));
    // Bounded: a follower that does not end is killed (and the test fails).
    let mut child = child;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ended = child.try_wait().unwrap().is_some();
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "pod logs -f did not end after the pod stopped");
    let followed = s(&out.stdout);
    assert!(followed.contains("first\nsecond\n") && followed.contains("tick 2"), "{followed}");
    let rec = env.record();
    assert_eq!(rec["phase"], "Stopped");
    assert!(rec["containers"].as_array().unwrap().iter().all(|c| c["state"] == "Terminated"), "{rec}");
    env.remove_and_check();
}

#[test]
fn names_are_validated_and_errors_say_pod_or_container() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("names");
    let o = env
        .run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME_b}\nspec:\n  containers: [{name: c, image: ROOTFS, command: ['true']}]\n");
    assert_fails_mentioning(&o, &["metadata.name", "DNS-1123"]);
    let o = env
        .run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  containers: [{name: C_1, image: ROOTFS, command: ['true']}]\n");
    assert_fails_mentioning(&o, &["container name", "C_1", "DNS-1123"]);
    assert!(!env.pod_dir().exists());
    assert_fails_mentioning(&env.hull(&["--systemd-cgroup", "pod", "ls"]), &["--systemd-cgroup is not supported by hull pod"]);
    for cmd in [&["pod", "ps", "nosuch"][..], &["pod", "logs", "nosuch"], &["pod", "stop", "nosuch"]] {
        let o = env.hull(cmd);
        assert_fails_mentioning(&o, &["pod \\\"nosuch\\\" does not exist"]);
        let err = s(&o.stderr);
        assert!(!err.contains("container \"pod") && !err.contains("container \\\"pod"), "{}", show(&o));
    }
    assert_ok(&env.run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sleep, '100']}]\n"));
    assert_fails_mentioning(&env.hull(&["pod", "logs", &env.name, "-c", "nope"]), &["has no container \\\"nope\\\""]);
    assert_fails_mentioning(
        &env.run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  containers: [{name: c, image: ROOTFS, command: ['true']}]\n"),
        &["already exists"],
    );
    env.remove_and_check();
}

/// A failed `pod run` of pod P removes P's containers only: not another
/// container whose id merely starts with `P_` (the old teardown deleted
/// every such id, so a failed pod `a` took pod `a_b`'s containers along).
#[test]
fn a_failed_pod_run_leaves_containers_with_a_longer_name_alone() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("a");
    let mut other = TestEnv::new("a-b");
    other.sh("sleep 100");
    other.write_config();
    let other_id = format!("{}_b_c_0", env.name);
    let root = env.root.path().to_str().unwrap().to_string();
    let o = run_cmd(
        std::process::Command::new(runtime()).args([
            "--root",
            &root,
            "run",
            "-d",
            "--bundle",
            other.bundle_path().to_str().unwrap(),
            &other_id,
        ]),
        CMD_TIMEOUT,
    );
    assert_ok(&o);
    // Pod NAME fails after its sandbox and first container's config were made.
    let o = env.run("apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  containers:\n  - {name: c, image: ROOTFS, command: ['true']}\n  - {name: d, image: /no/such/rootfs, command: ['true']}\n");
    assert_fails_mentioning(&o, &["spec.containers[1].image"]);
    let st = env.hull(&["state", &other_id]);
    assert!(s(&st.stdout).contains("\"running\""), "the other container was touched: {}", show(&st));
    assert_ok(&env.hull(&["delete", "--force", &other_id]));
}

/// Pods are keyed by namespace and name: one name in two namespaces runs
/// side by side, and every command takes `-n`.
#[test]
fn same_pod_name_in_two_namespaces() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("nsname");
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sh, -c, 'echo in-$NS; sleep 100'], env: [{name: NS, value: NSV}]}]\n";
    assert_ok(&env.run(&manifest.replace("NSV", "default")));
    // -n for `run`, and a manifest namespace that contradicts it is refused.
    let text = manifest
        .replace("NSV", "other")
        .replace("ROOTFS", rootfs().to_str().unwrap())
        .replace("NAME", &env.name);
    let path = env.root.path().join("other.yaml");
    std::fs::write(&path, &text).unwrap();
    let empty = env.root.path().join("no-cni");
    let run = |extra: &[&str]| {
        let mut args = vec!["pod", "run", "--cni-conf-dir", empty.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        env.hull(&args)
    };
    assert_ok(&run(&["-n", "other"]));
    let text_ns = text.replace("metadata: {name:", "metadata: {namespace: third, name:");
    std::fs::write(&path, &text_ns).unwrap();
    assert_fails_mentioning(&run(&["-n", "other"]), &["metadata.namespace \\\"third\\\" does not match --namespace \\\"other\\\""]);
    assert_fails_mentioning(&run(&["-n", "Bad_NS"]), &["namespace", "DNS-1123"]);
    for (ns, want) in [("default", "in-default"), ("other", "in-other")] {
        wait_for(&format!("log of {ns}"), Duration::from_secs(10), || {
            s(&env.hull(&["pod", "logs", "-n", ns, &env.name]).stdout).contains(want)
        });
        let ls = s(&env.hull(&["pod", "ls", "-n", ns]).stdout);
        assert_eq!(ls.matches(&env.name).count(), 1, "{ls}");
        assert_ok(&env.hull(&["pod", "ps", "-n", ns, &env.name]));
    }
    let o = env.hull(&["pod", "exec", "-n", "other", &env.name, "--", "sh", "-c", "echo $NS"]);
    assert_eq!(s(&o.stdout), "other\n", "{}", show(&o));
    assert!(s(&env.hull(&["pod", "ls", "-n", "nowhere"]).stdout).lines().count() == 1);
    assert_ok(&env.hull(&["pod", "rm", "-n", "other", &env.name]));
    assert_fails_mentioning(
        &env.hull(&["pod", "ps", "-n", "other", &env.name]),
        &[&format!("pod \\\"other/{}\\\" does not exist", env.name)],
    );
    // The default one still runs.
    assert!(s(&env.hull(&["pod", "ps", &env.name]).stdout).contains("running"));
    env.remove_and_check();
}

/// A supervisor that died is replaced by the next command that finds it
/// gone; the new one adopts the running container and restarts it as the
/// policy says when it exits.
#[test]
fn a_killed_supervisor_is_replaced_and_restarts_resume() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("resup");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'sleep 2; exit 3']}
"#,
    ));
    let sup = env.record()["supervisorPid"].as_i64().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the old supervisor gone", Duration::from_secs(5), || !Path::new(&format!("/proc/{sup}")).exists());
    // `pod ps` finds it gone and starts a new one.
    assert_ok(&env.hull(&["pod", "ps", &env.name]));
    wait_for("a restart by the new supervisor", Duration::from_secs(20), || {
        let _ = env.hull(&["pod", "ps", &env.name]);
        env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    let new_sup = env.record()["supervisorPid"].as_i64().unwrap();
    assert_ne!(new_sup, sup);
    assert_eq!(env.record()["containers"][0]["lastExit"]["exitCode"], 3);
    // Exactly one supervisor runs, however many commands looked.
    let supervisors = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("supervise") && cmd.contains(env.root.path().to_str().unwrap())
        })
        .count();
    assert_eq!(supervisors, 1);
    env.remove_and_check();
}

/// A liveness-probe stop with a long grace period does not hold up the
/// supervisor: a `pod stop` meanwhile ends promptly.
#[test]
fn a_liveness_stop_does_not_stall_pod_stop() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("nonblock");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ROOTFS
    command: [sh, -c, 'trap "" TERM; while true; do sleep 1; done']
    livenessProbe:
      exec: {command: ['false']}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 60
"#,
    ));
    // Let the probe fail and its 60 s stop begin.
    std::thread::sleep(Duration::from_secs(3));
    let t = std::time::Instant::now();
    assert_ok(&env.hull(&["pod", "stop", &env.name]));
    assert!(t.elapsed() < Duration::from_secs(10), "pod stop took {:?}", t.elapsed());
    assert_eq!(env.record()["phase"], "Stopped");
    env.remove_and_check();
}

/// emptyDirs as the kubelet makes them: on disk under the state directory
/// (a plain directory, no mount of its own), `medium: Memory` a tmpfs of
/// its sizeLimit; a container writing past a disk emptyDir's sizeLimit
/// gets the pod evicted (Failed, reason Evicted, a message naming the
/// volume and the limit), and removal removes the volumes.
#[test]
fn empty_dirs_on_disk_and_in_memory_and_eviction_past_a_size_limit() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("evict");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  volumes:
  - {name: d, emptyDir: {sizeLimit: 1Mi}}
  - {name: m, emptyDir: {medium: Memory, sizeLimit: 2Mi}}
  containers:
  - name: c
    image: ROOTFS
    command: [sh, -c, 'trap "" TERM; echo hi > /m/x; until [ -f /d/go ]; do sleep 0.1; done; dd if=/dev/zero of=/d/big bs=1024 count=2048; sleep 1000']
    volumeMounts: [{name: d, mountPath: /d}, {name: m, mountPath: /m}]
"#,
    ));
    let vols = env.state_dir().join("pods").join(env.uid()).join("volumes");
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
    let tmpfs = |p: &Path| nix::sys::statfs::statfs(p).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC;
    // On disk: under the state dir, in its parent's filesystem.
    assert!(vols.join("d").is_dir(), "no disk emptyDir at {}", vols.display());
    assert_eq!(dev(&vols.join("d")), dev(&vols), "the disk emptyDir is a mount of its own");
    // In memory: a tmpfs of the limit's size, the container's file in it.
    let m = vols.join("m");
    assert!(tmpfs(&m) && dev(&m) != dev(&vols), "the Memory emptyDir is not a tmpfs");
    let st = nix::sys::statvfs::statvfs(&m).unwrap();
    assert_eq!(st.blocks() as u64 * st.fragment_size() as u64, 2 << 20);
    wait_for("the container's file in the Memory emptyDir", Duration::from_secs(10), || m.join("x").exists());
    // Within the limit: still running after a few checks.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(env.record()["phase"], "Running");
    std::fs::write(vols.join("d/go"), "").unwrap();
    // Past it: evicted at the next check, the container killed at once
    // (it ignores SIGTERM and has 30 s of grace).
    assert_eq!(env.wait_phase(&["Failed", "Succeeded", "Stopped"]), "Failed");
    let rec = env.record();
    assert_eq!(rec["reason"], "Evicted", "{rec}");
    let msg = rec["message"].as_str().unwrap_or("");
    assert!(msg.contains("\"d\"") && msg.contains("1Mi"), "{msg}");
    assert_eq!(rec["containers"][0]["state"], "Terminated", "{rec}");
    let ps = s(&env.hull(&["pod", "ps", &env.name]).stdout);
    assert!(ps.contains("Failed (Evicted: ") && ps.contains("1Mi"), "{ps}");
    let ls = s(&env.hull(&["pod", "ls"]).stdout);
    assert!(ls.lines().any(|l| l.starts_with(&env.name) && l.contains("Evicted")), "{ls}");
    env.remove_and_check();
    assert!(!vols.exists());
}

/// A pod uid names the pod's state directory: a uid that is not a plain
/// name is refused naming the field, and a second pod with the uid of a
/// running one is refused without touching the first's volumes.
#[test]
fn pod_uids_are_checked_and_not_shared() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("uid");
    let uid = format!("uid-{}", env.name);
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, uid: UID}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes: [{name: v, emptyDir: {}}]\n  containers: [{name: c, image: ROOTFS, command: [sh, -c, 'echo kept > /v/f; sleep 100'], volumeMounts: [{name: v, mountPath: /v}]}]\n";
    assert_fails_mentioning(&env.run(&manifest.replace("UID", "'../x'")), &["metadata.uid"]);
    assert!(!env.state_dir().join("x").exists() && !env.state_dir().join("pods").exists());
    assert_ok(&env.run(&manifest.replace("UID", &uid)));
    let f = env.state_dir().join("pods").join(&uid).join("volumes/v/f");
    wait_for("the first pod's file", Duration::from_secs(10), || f.exists());
    let o = env.run(&manifest.replace("NAME", "NAME-b").replace("UID", &uid));
    assert_fails_mentioning(&o, &["metadata.uid"]);
    assert!(!env.state_dir().join("pod-records").join(format!("{}-b", env.name)).exists(), "the refused pod left its directory");
    assert_eq!(read_all(&f), "kept\n", "the refused pod touched the first's volume");
    env.remove_and_check();
}

/// `pod stop` is a call the supervisor wakes on: a pod whose init
/// container sits in a ten-minute back-off stops at once (the bound is
/// generous, a wait for the back-off would take ten minutes).
#[test]
fn a_stop_during_a_long_back_off_returns_promptly() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("stopcall");
    let empty = env.root.path().join("no-cni");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env.run_full(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  restartPolicy: Always\n  initContainers: [{name: i, image: ROOTFS, command: ['false']}]\n  containers: [{name: c, image: ROOTFS, command: [sleep, '1000']}]\n",
        &empty,
        &["--backoff-base-ms", "600000", "--wait", "1"],
    );
    // `pod run` gives up waiting for the app container after a second (the
    // pod runs on); the init container's first restart is at once, the
    // second waits the back-off.
    assert!(out.status.code().is_some(), "{out:?}");
    // Its second exit recorded (restart 1 terminated) and no third start:
    // the supervisor waits out the back-off.
    wait_for("the init container in its long back-off", Duration::from_secs(30), || {
        let c = &env.record()["containers"][0];
        c["restartCount"] == 1 && c["state"] == "Terminated"
    });
    // The supervisor is in its back-off wait: give it a moment to be there.
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    assert_ok(&env.hull(&["pod", "stop", &env.name]));
    assert!(t.elapsed() < Duration::from_secs(60), "pod stop took {:?}", t.elapsed());
    assert_eq!(env.record()["phase"], "Stopped");
    // The supervisor has ended (a zombie until whoever adopted it reaps it).
    let sup = env.record()["supervisorPid"].as_i64().unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')), "supervisor still runs: {stat}");
    env.remove_and_check();
}

/// A container that cannot be made (its hostPath is gone) waits with
/// reason CreateContainerError and the runtime's message, is tried again
/// with back-off, and runs again once its source is back.
#[test]
fn a_container_that_cannot_be_created_is_reported_and_retried() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("createerr");
    let host = env.root.path().join("host-src");
    std::fs::create_dir(&host).unwrap();
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  volumes: [{name: h, hostPath: {path: HOSTDIR, type: Directory}}]
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'sleep 0.5; exit 1'], volumeMounts: [{name: h, mountPath: /h}]}
"#
    .replace("HOSTDIR", host.to_str().unwrap());
    assert_ok(&env.run(&manifest));
    std::fs::remove_dir(&host).unwrap();
    wait_for("CreateContainerError", Duration::from_secs(30), || env.record()["containers"][0]["reason"] == "CreateContainerError");
    let c = env.record()["containers"][0].clone();
    assert!(c["message"].as_str().unwrap_or("").contains("does not exist"), "{c}");
    let ps = s(&env.hull(&["pod", "ps", &env.name]).stdout);
    assert!(ps.contains("CreateContainerError"), "{ps}");
    std::fs::create_dir(&host).unwrap();
    wait_for("a new attempt running", Duration::from_secs(30), || {
        let c = &env.record()["containers"][0];
        c["reason"] != "CreateContainerError" && c["attempt"].as_u64().unwrap_or(0) >= 1
    });
    env.remove_and_check();
}

/// Concurrent `pod rm` of one pod take turns and all succeed; a pod
/// directory that a `pod run` cut short left without a record is removed
/// by `pod rm` or the next `pod run` rather than blocking the name for good.
#[test]
fn concurrent_removals_all_succeed_and_a_bare_pod_directory_is_removable() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("rm5");
    assert_ok(&env.run(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sleep, '100']}]\n",
    ));
    let uid = env.uid();
    let holder = env.view()["holderPid"].as_i64();
    let outs: Vec<Output> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..5).map(|_| sc.spawn(|| env.hull(&["pod", "rm", &env.name]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert_ok(o);
    }
    let root = env.root.path().to_str().unwrap().to_string();
    wait_for("pod resources gone", Duration::from_secs(10), || pod_leftovers(&root, &uid, holder).is_empty());
    assert!(!env.pod_dir().exists() && !env.pod_run_dir().exists(), "pod dir left");
    // A claimed directory without a record (a run killed right after it):
    // `pod rm` removes it, and so does the next `pod run`, which goes on.
    std::fs::create_dir_all(env.pod_dir()).unwrap();
    assert_ok(&env.hull(&["pod", "rm", &env.name]));
    assert!(!env.pod_dir().exists(), "bare pod dir left");
    std::fs::create_dir_all(env.pod_dir()).unwrap();
    assert_ok(&env.run(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sleep, '100']}]\n",
    ));
    env.remove_and_check();
}

/// A container whose monitor was killed (so no exit record will come) is
/// not shown running for ever: once its process is gone it is terminated
/// with reason Unknown, and restartPolicy acts on it.
#[test]
fn a_container_that_died_with_its_monitor_is_seen_and_restarted() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("monkill");
    assert_ok(&env.run(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  restartPolicy: Always\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sleep, '1000']}]\n",
    ));
    let id = env.record()["containers"][0]["containerId"].as_str().unwrap_or("").to_string();
    assert!(!id.is_empty());
    let state: serde_json::Value = serde_json::from_slice(&env.oci(&["state", &id]).stdout).unwrap_or_default();
    let init = state["pid"].as_i64().expect("the container's pid") as i32;
    let monitors: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = s(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
            (cmd.contains(" monitor ") && cmd.contains(&id)).then_some(pid)
        })
        .collect();
    assert_eq!(monitors.len(), 1, "the container's monitor");
    let kill = |pid: i32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    kill(monitors[0]);
    wait_for("the monitor gone", Duration::from_secs(10), || !Path::new(&format!("/proc/{}/cmdline", monitors[0])).exists());
    kill(init);
    wait_for("a restart", Duration::from_secs(30), || env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(env.record()["containers"][0]["lastExit"]["reason"], "Unknown", "{}", env.record()["containers"][0]);
    wait_for("the new attempt running", Duration::from_secs(20), || env.record()["containers"][0]["state"] == "Running");
    env.remove_and_check();
}

/// A pod whose supervisor was killed and whose containers then all ended
/// is not shown `Running` from the last record: from the first look on,
/// its phase is the one its containers and restart policy give (Never,
/// one exit 3: Failed). And `pod ps` into a pipe its reader closed
/// (`| head -1`) ends quietly.
#[test]
fn a_pod_whose_supervisor_died_gets_its_phase_from_its_containers() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("deadsup");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: ok, image: ROOTFS, command: [sh, -c, 'sleep 2; exit 0']}
  - {name: bad, image: ROOTFS, command: [sh, -c, 'sleep 2; exit 3']}
"#,
    ));
    let sup = env.record()["supervisorPid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for("the supervisor gone", Duration::from_secs(10), || !Path::new(&format!("/proc/{sup}/cmdline")).exists());
    assert_eq!(env.record()["phase"], "Running", "the dead supervisor's last word");
    // Both end; asked of the OCI state directly (a `hull pod` command
    // would start a new supervisor).
    let ids: Vec<String> = (0..2)
        .map(|i| env.record()["containers"][i]["containerId"].as_str().unwrap_or("").to_string())
        .collect();
    for id in &ids {
        wait_for("the container stopped", Duration::from_secs(30), || s(&env.oci(&["state", id]).stdout).contains("\"stopped\""));
    }
    let ps = env.hull(&["pod", "ps", &env.name]);
    assert_ok(&ps);
    let first = s(&ps.stdout).lines().next().unwrap_or("").to_string();
    assert!(first.contains(" Failed") && !first.contains("Running"), "{}", show(&ps));
    let ls = s(&env.hull(&["pod", "ls"]).stdout);
    assert!(ls.lines().any(|l| l.starts_with(&env.name) && l.contains("Failed")), "{ls}");
    assert_quiet_on_a_closed_pipe(&mut env.cmd(&["pod", "ps", &env.name]));
    env.remove_and_check();
}

/// An image a pod uses stays while the pod exists: every restart needs it
/// again, so `hull image rm` is refused naming the image and the pod (also
/// between two attempts, when no container of it exists), and succeeds
/// once the pod is removed.
#[test]
fn image_rm_of_an_image_a_pod_uses_is_refused_until_pod_rm() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("imgrm");
    let Some(image_root) = imported_image(&env) else { return };
    let image = |args: &[&str]| run_cmd(env.cmd(&["--image-root", image_root.to_str().unwrap()]).args(args), Duration::from_secs(60));
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  restartPolicy: Always\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: \"hull-test:latest\", command: [sh, -c, 'sleep 0.3; exit 1']}\n"
        .replace("NAME", &env.name);
    let path = env.root.path().join("pod.yaml");
    std::fs::write(&path, text).unwrap();
    let no_cni = env.root.path().join("no-cni");
    std::fs::create_dir_all(&no_cni).unwrap();
    assert_ok(&image(&["pod", "run", "--backoff-base-ms", "100", "--cni-conf-dir", no_cni.to_str().unwrap(), path.to_str().unwrap()]));
    for _ in 0..5 {
        let o = image(&["image", "rm", "hull-test:latest"]);
        assert_fails_mentioning(&o, &["in use"]);
        let err = s(&o.stderr);
        assert!(err.contains("hull-test") && err.contains(&env.name), "{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(s(&image(&["image", "ls", "-q"]).stdout).contains("hull-test"), "the image is still there");
    wait_for("a restart", Duration::from_secs(30), || env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1);
    env.remove_and_check();
    assert_ok(&image(&["image", "rm", "hull-test:latest"]));
    let leases = std::fs::read_dir(image_root.join("leases")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leases, 0, "a lease left after pod rm");
}

/// Records under the state directory, runtime files under the root (as
/// the daemon splits them); a root remembers its state directory and
/// refuses another; a record an older hull left under the root is refused
/// by name, never read as a missing or corrupt pod.
#[test]
fn records_under_the_state_dir_and_old_records_refused() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("layout");
    assert_ok(&env.run(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: ROOTFS, command: [sh, -c, 'echo hi; sleep 100']}]\n",
    ));
    let (state, root) = (env.state_dir(), env.root.path().to_path_buf());
    assert!(env.pod_dir().join("pod.json").exists(), "record under the state dir");
    wait_for("the log", Duration::from_secs(20), || read_all(&env.pod_dir().join("logs/c/0.log")).contains("hi"));
    assert!(env.pod_run_dir().join("supervisor.lock").exists() && env.pod_run_dir().join("stop.fifo").exists());
    let listed = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    assert_eq!(listed(&state.join("pod-runtime/sandboxes")), 1, "sandbox record under the state dir");
    assert_eq!(listed(&state.join("pod-runtime/containers")), 1, "container record under the state dir");
    assert!(listed(&root.join("pod-run/oci")) == 1 && listed(&root.join("pod-run/sandboxes")) == 1, "runtime files under the root");
    assert!(!root.join("pods").exists() && !root.join("pod-runtime").exists(), "nothing in the old places");
    // No --state-dir: the root's own.
    let bare = |args: &[&str]| {
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root").arg(&root).env_remove("HULL_STATE_DIR").args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    };
    let ps = bare(&["pod", "ps", &env.name]);
    assert_ok(&ps);
    assert!(s(&ps.stdout).contains("Running"), "{}", show(&ps));
    let other = root.join("other-state");
    assert_fails_mentioning(&bare(&["pod", "ls", "--state-dir", other.to_str().unwrap()]), &["pass --state-dir", state.to_str().unwrap()]);
    assert!(!other.exists(), "a refused state dir is not made");
    // What an older hull kept under the root.
    let old = root.join("pods").join(&env.name).join("pod.json");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, b"{\"name\": \"old\"}").unwrap();
    for args in [&["pod", "ls"][..], &["pod", "ps", &env.name], &["pod", "rm", &env.name]] {
        assert_fails_mentioning(&env.hull(args), &[old.to_str().unwrap(), "older hull", "pod rm"]);
    }
    assert_eq!(read_all(&old), "{\"name\": \"old\"}", "the old record is left as it was");
    assert!(env.pod_dir().join("pod.json").exists(), "a refused command touched nothing");
    std::fs::remove_dir_all(root.join("pods")).unwrap();
    env.remove_and_check();
}

/// `pod logs -f` sleeps on events (the log's writes, the record's, the
/// supervisor's end), not a timer: it prints lines as they come and ends
/// once the container has ended.
#[test]
fn logs_follow_prints_as_lines_come_and_ends_with_the_container() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("follow");
    assert_ok(&env.run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{name: w, emptyDir: {}}]
  containers:
  - name: c
    image: ROOTFS
    command: [sh, -c, 'echo one; while [ ! -e /w/go ]; do sleep 0.1; done; echo two']
    volumeMounts: [{name: w, mountPath: /w}]
"#,
    ));
    let mut follow = env.cmd(&["pod", "logs", "-f", &env.name]);
    follow.stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // Lines as the follower prints them, read on a thread: every wait on
    // them is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(stdout) {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    // A line written before the follow began, then one after.
    assert_eq!(rx.recv_timeout(Duration::from_secs(120)).ok().as_deref(), Some("one"));
    // The line can come before the supervisor records the container
    // running (a loaded machine), and `pod exec` refuses one that is not.
    wait_for("the container recorded running", Duration::from_secs(60), || env.record()["containers"][0]["state"] == "Running");
    assert_ok(&env.hull(&["pod", "exec", &env.name, "--", "touch", "/w/go"]));
    // Not woken (or woken only by a timer of an hour): fails here.
    assert_eq!(rx.recv_timeout(Duration::from_secs(120)).ok().as_deref(), Some("two"));
    let ended = wait_until(Duration::from_secs(120), || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(ended, "pod logs -f did not end after the container did");
    env.remove_and_check();
}

/// Whether `cond` came true within `limit` (looked at every 50 ms).
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
