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
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root").arg(self.root.path()).args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    /// Write the manifest (ROOTFS and NAME substituted) and `pod run` it.
    fn run(&self, manifest: &str) -> Output {
        let text = manifest.replace("ROOTFS", rootfs().to_str().unwrap()).replace("NAME", &self.name);
        let path = self.root.path().join("pod.yaml");
        std::fs::write(&path, text).unwrap();
        self.hull(&["pod", "run", "--backoff-base-ms", "100", path.to_str().unwrap()])
    }

    fn record(&self) -> serde_json::Value {
        let p = self.root.path().join("pods").join(&self.name).join("pod.json");
        serde_json::from_str(&read_all(&p)).unwrap_or(serde_json::Value::Null)
    }

    fn wait_phase(&self, phases: &[&str]) -> String {
        let mut phase = String::new();
        wait_for(&format!("pod phase in {phases:?}"), Duration::from_secs(20), || {
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
        let rec = self.record();
        let uid = self.uid();
        let holder = rec["holder"]["pid"].as_i64();
        assert_ok(&self.hull(&["pod", "rm", &self.name]));
        let root = self.root.path().to_str().unwrap().to_string();
        wait_for("pod resources gone", Duration::from_secs(5), || pod_leftovers(&root, &uid, holder).is_empty());
        assert!(!self.root.path().join("pods").join(&self.name).exists(), "pod dir left");
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        let _ = self.hull(&["pod", "rm", &self.name]);
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
      echo from-a > /shared/msg
      nc -l -p 7070 -e echo pong &
      sleep 2
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
      for i in $(seq 1 20); do r=$(nc 127.0.0.1 7070 </dev/null) && [ -n "$r" ] && break; sleep 0.1; done
      echo "net $r"
      if [ -e /tmp/only-in-a ] || [ -e /only-in-a ]; then echo sees-a-files; else echo own-filesystem; fi
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
    env.remove_and_check();
}

#[test]
fn shared_process_namespace_shows_the_other_containers_processes() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("sharepid");
    let o = env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  containers:
  - {name: a, image: ROOTFS, command: [sleep, "3"]}
  - name: b
    image: ROOTFS
    command: [sh, -c, 'sleep 0.5; ps -o pid,args | grep -c "[s]leep 3"; echo pid1 $(cat /proc/1/comm)']
"#);
    assert_ok(&o);
    env.wait_phase(&["Succeeded", "Failed"]);
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
    assert!(!env.root.path().join("pods").join(&env.name).exists());
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
    let o = env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - name: c
    image: ROOTFS
    command: [true]
    lifecycle: {preStop: {exec: {command: [x]}}}
"#);
    assert_fails_mentioning(&o, &["spec.containers[0].lifecycle"]);
    assert!(!env.root.path().join("pods").join(&env.name).exists());
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
    assert_ok(&env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'echo attempt; echo oops >&2; exit 3']}
"#));
    wait_for("two restarts", Duration::from_secs(20), || {
        env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 2
    });
    let ps = s(&env.hull(&["pod", "ps", &env.name]).stdout);
    assert!(ps.contains(" 3 "), "exit code 3 in ps: {ps}");
    let log = read_all(&env.root.path().join("pods").join(&env.name).join("logs/c/0.log"));
    let re_ok = log.lines().all(|l| {
        let parts: Vec<&str> = l.splitn(4, ' ').collect();
        parts.len() == 4 && humantime::parse_rfc3339(parts[0]).is_ok() && ["stdout", "stderr"].contains(&parts[1]) && ["F", "P"].contains(&parts[2])
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
    assert_ok(&env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: ROOTFS, command: [sh, -c, 'sleep 1.5; exit 7']}
"#));
    let sup = env.record()["supervisorPid"].as_i64().unwrap();
    assert!(sup > 0);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let id = env.record()["containers"][0]["containerId"].as_str().unwrap().to_string();
    let st = env.hull(&["state", &id]);
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
    assert_ok(&env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ROOTFS
    command: [sh, -c, 'touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 1000']
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
    readinessProbe:
      exec: {command: ['true']}
      periodSeconds: 1
"#));
    wait_for("a restart after the liveness failure", Duration::from_secs(20), || {
        env.record()["containers"][0]["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    let rec = env.record();
    let c = &rec["containers"][0];
    assert_eq!(c["lastExit"]["exitCode"], 137, "{c}");
    assert_eq!(c["containerId"].as_str().unwrap(), format!("{}_c_1", env.name), "a new container: {c}");
    // The old container is gone, the new one runs.
    assert_fails(&env.hull(&["state", &format!("{}_c_0", env.name)]));
    wait_for("new container ready", Duration::from_secs(10), || env.record()["containers"][0]["ready"] == true);
    env.remove_and_check();
}

#[test]
fn bad_probe_is_refused_naming_the_field() {
    if !require_root() || is_runc() {
        return;
    }
    let env = PodEnv::new("badprobe");
    let o = env.run(r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  containers:
  - name: c
    image: ROOTFS
    command: [sleep, "10"]
    livenessProbe: {tcpSocket: {port: 70000}}
"#);
    assert_fails_mentioning(&o, &["livenessProbe", "port"]);
    assert!(!env.root.path().join("pods").join(&env.name).exists());
}
