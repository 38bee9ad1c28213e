//! Hostile input: races on bind sources, bad manifests and configs, and
//! the limits every number from outside must respect.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// One hull root for pods under test; every pod made through it is removed
/// on drop.
struct Pods {
    root: tempfile::TempDir,
    names: std::cell::RefCell<Vec<String>>,
}

impl Pods {
    fn new() -> Pods {
        let root = tempfile::Builder::new().prefix("hull-hard-t").tempdir_in("/tmp").unwrap();
        Pods { root, names: Default::default() }
    }

    fn hull(&self, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(runtime());
        cmd.arg("--root").arg(self.root.path()).args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    /// `pod run` the manifest (ROOTFS and NAME substituted) without a CNI
    /// network; returns the pod's name and the command's output.
    fn run(&self, name: &str, manifest: &str) -> (String, Output) {
        let name = unique_id(name).replace('_', "-").to_lowercase();
        self.names.borrow_mut().push(name.clone());
        let text = manifest.replace("ROOTFS", rootfs().to_str().unwrap()).replace("NAME", &name);
        let path = self.root.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let no_cni = self.root.path().join("no-cni");
        std::fs::create_dir_all(&no_cni).unwrap();
        let o = self.hull(&["pod", "run", "--wait", "2", "--backoff-base-ms", "100", "--cni-conf-dir", no_cni.to_str().unwrap(), path.to_str().unwrap()]);
        (name, o)
    }

    fn phase(&self, name: &str) -> String {
        let p = self.root.path().join("pods").join(name).join("pod.json");
        let v: serde_json::Value = serde_json::from_str(&read_all(&p)).unwrap_or_default();
        v["phase"].as_str().unwrap_or("").to_string()
    }

    fn wait_ended(&self, name: &str, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if matches!(self.phase(name).as_str(), "Succeeded" | "Failed") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn rm(&self, name: &str) {
        assert_ok(&self.hull(&["pod", "rm", name]));
        self.names.borrow_mut().retain(|n| n != name);
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for n in self.names.borrow().iter() {
            let _ = self.hull(&["pod", "rm", n]);
        }
    }
}

/// A static program that swaps two names in a directory with
/// renameat2(RENAME_EXCHANGE) for ever; None when there is no compiler.
fn build_swapper(dir: &Path) -> Option<()> {
    let src = dir.join("swap.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int d = open(argv[1], O_PATH | O_DIRECTORY);
    if (d < 0) return 1;
    for (;;) syscall(SYS_renameat2, d, argv[2], d, argv[3], 2 /* RENAME_EXCHANGE */);
}
"#,
    )
    .unwrap();
    let o = std::process::Command::new("gcc").args(["-static", "-O2", "-o"]).arg(dir.join("swap")).arg(&src).output().ok()?;
    o.status.success().then_some(())
}

const SWAPPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  volumes:
  - {name: shared, hostPath: {path: SHARED, type: Directory}}
  - {name: bin, hostPath: {path: BIN, type: Directory}}
  containers:
  - name: swap
    image: ROOTFS
    command: [/bin-x/swap, /shared, sub, link]
    volumeMounts:
    - {name: shared, mountPath: /shared}
    - {name: bin, mountPath: /bin-x, readOnly: true}
"#;

const VICTIM: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  volumes: [{name: shared, hostPath: {path: SHARED, type: Directory}}]
  containers:
  - name: v
    image: ROOTFS
    command: [ls, /data]
    volumeMounts: [{name: shared, mountPath: /data, subPath: sub}]
"#;

/// A container keeps swapping a directory and a symlink to a host
/// directory in a volume it shares; another pod mounts the directory's name
/// as a subPath, many times. The mount is made from the fd resolved once,
/// so no start ever sees the host directory.
#[test]
fn subpath_swapped_for_a_symlink_never_mounts_a_host_path() {
    if !require_root() || is_runc() {
        return;
    }
    let bin = host_tempdir("hull-swapbin");
    if build_swapper(bin.path()).is_none() {
        eprintln!("skipped: gcc -static cannot build the swapping program");
        return;
    }
    let shared = host_tempdir("hull-swapvol");
    let secret = host_tempdir("hull-hostsecret");
    std::fs::write(secret.path().join("HOST-SECRET-MARKER"), "").unwrap();
    std::fs::create_dir(shared.path().join("sub")).unwrap();
    std::fs::write(shared.path().join("sub/inside"), "").unwrap();
    std::os::unix::fs::symlink(secret.path(), shared.path().join("link")).unwrap();

    let pods = Pods::new();
    let subst = |m: &str| m.replace("SHARED", shared.path().to_str().unwrap()).replace("BIN", bin.path().to_str().unwrap());
    let (swapper, o) = pods.run("swapper", &subst(SWAPPER));
    assert_ok(&o);
    // The swapping has begun once "sub" has been seen as a symlink.
    wait_for("the swap to start", Duration::from_secs(10), || shared.path().join("sub").is_symlink());

    let (mut ran, mut refused) = (0, 0);
    for i in 0..30 {
        let (name, o) = pods.run(&format!("victim{i}"), &subst(VICTIM));
        let err = s(&o.stderr);
        assert!(!err.contains("HOST-SECRET-MARKER"));
        // A start refused by the supervisor leaves the container waiting
        // (and `pod run` returns after --wait): counted as refused.
        if o.status.success() && pods.wait_ended(&name, Duration::from_secs(5)) {
            let log = s(&pods.hull(&["pod", "logs", &name, "-c", "v"]).stdout);
            assert!(!log.contains("HOST-SECRET-MARKER"), "start {i} mounted the host directory:\n{log}");
            if log.contains("inside") {
                ran += 1;
            }
        } else {
            refused += 1;
        }
        if !err.is_empty() && !o.status.success() {
            assert!(err.contains("outside the volume"), "start {i}: {err}");
        }
        if pods.names.borrow().contains(&name) && pods.root.path().join("pods").join(&name).exists() {
            pods.rm(&name);
        }
    }
    eprintln!("victim starts: {ran} saw the volume's directory, {refused} were refused");
    assert!(ran > 0, "no victim ever ran: the test proves nothing");
    pods.rm(&swapper);
}
