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
        cmd.arg("--root")
            .arg(self.root.path())
            .env("HULL_STATE_DIR", self.root.path().join("state"))
            .args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    /// A pod's directory under the state directory (its record, logs).
    fn pod_dir(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join("state/pod-records").join(name)
    }

    /// `pod run` the manifest (ROOTFS and NAME substituted) without a CNI
    /// network; returns the pod's name and the command's output.
    fn run(&self, name: &str, manifest: &str) -> (String, Output) {
        let no_cni = self.root.path().join("no-cni");
        std::fs::create_dir_all(&no_cni).unwrap();
        self.run_with_cni(name, manifest, &no_cni)
    }

    fn run_with_cni(&self, name: &str, manifest: &str, cni_dir: &Path) -> (String, Output) {
        let name = unique_id(name).replace('_', "-").to_lowercase();
        self.names.borrow_mut().push(name.clone());
        let text = manifest.replace("ROOTFS", rootfs().to_str().unwrap()).replace("NAME", &name);
        let path = self.root.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        let o = self.hull(&[
            "pod",
            "run",
            "--wait",
            "2",
            "--backoff-base-ms",
            "100",
            "--cni-conf-dir",
            cni_dir.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        (name, o)
    }

    fn phase(&self, name: &str) -> String {
        let p = self.pod_dir(name).join("pod.json");
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
    let o = std::process::Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("swap"))
        .arg(&src)
        .output()
        .ok()?;
    o.status.success().then_some(())
}

const SWAPPER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  restartPolicy: Never
  # The swapper is pid 1 of its namespace and ignores SIGTERM: no grace
  # period to sit out (a loaded machine made `pod rm` pass its 60 s).
  terminationGracePeriodSeconds: 1
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
        if pods.names.borrow().contains(&name) && pods.pod_dir(&name).exists() {
            pods.rm(&name);
        }
    }
    eprintln!("victim starts: {ran} saw the volume's directory, {refused} were refused");
    assert!(ran > 0, "no victim ever ran: the test proves nothing");
    pods.rm(&swapper);
}

/// NUL bytes (which would cut an argument short) and more groups than
/// setgroups takes are refused before anything is made, naming the field.
#[test]
fn config_nul_bytes_and_too_many_groups_are_refused_naming_the_field() {
    if !require_root() || is_runc() {
        return;
    }
    let mut env = TestEnv::new("nulcfg");
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 4] = [
        (|c| c["process"]["args"] = serde_json::json!(["echo", "a\u{0}b"]), "process.args[1]"),
        (|c| c["process"]["env"] = serde_json::json!(["PATH=/bin", "A=x\u{0}y"]), "process.env[1]"),
        (|c| c["hostname"] = serde_json::json!("a\u{0}b"), "hostname"),
        (|c| c["process"]["user"]["additionalGids"] = serde_json::json!((0..70_000).collect::<Vec<u32>>()), "process.user.additionalGids"),
    ];
    let base = env.config.clone();
    for (edit, field) in cases {
        env.config = base.clone();
        edit(&mut env.config);
        let o = env.create();
        assert_fails_mentioning(&o, &[field]);
        assert_no_leftovers(&env);
    }
}

/// A memory limit too small for the init to start is named, not reported
/// as an init that "exited during setup".
#[test]
fn memory_limit_too_low_to_start_names_the_setting() {
    if !require_root() || is_runc() {
        return;
    }
    let mut env = TestEnv::new("memlow");
    env.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 1}});
    let o = env.create();
    assert_fails_mentioning(&o, &["linux.resources.memory.limit"]);
    assert_no_leftovers(&env);
}

/// Leftovers of a pod root: mounts, processes, cgroups named for it.
fn leftovers(root: &Path) -> Vec<String> {
    let root = root.to_str().unwrap();
    let mut out: Vec<String> = read_all(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter(|l| l.contains(root))
        .map(|l| format!("mount: {l}"))
        .collect();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = s(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).replace('\0', " ");
        if cmd.contains(root) {
            out.push(format!("process: {cmd}"));
        }
    }
    if std::fs::read_dir(Path::new(root).join("state/pod-records")).is_ok_and(|mut d| d.next().is_some()) {
        out.push("a pod directory".into());
    }
    out
}

/// A hostPort needs a plugin that maps ports: a network without one is
/// refused rather than the port silently left unmapped.
#[test]
fn host_port_without_portmap_is_refused() {
    if !require_root() || is_runc() {
        return;
    }
    let pods = Pods::new();
    let cni = pods.root.path().join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("10-noportmap.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "noportmap", "plugins": [{"type": "bridge", "bridge": "hullnopm0", "ipam": {"type": "host-local", "subnet": "10.199.0.0/24"}}]}"#,
    )
    .unwrap();
    let (_, o) = pods.run_with_cni(
        "hostport",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  containers:\n  - {name: c, image: ROOTFS, command: [sleep, '5'], ports: [{containerPort: 80, hostPort: 18099}]}\n",
        &cni,
    );
    assert_fails_mentioning(&o, &["portMappings"]);
    let left = leftovers(pods.root.path());
    assert!(left.is_empty(), "{left:?}");
}

/// Out-of-range numbers and bad enum values in a manifest are refused by
/// `pod run` with the field's path, and nothing is left behind.
#[test]
fn hostile_manifest_values_are_refused_naming_the_field() {
    if !require_root() || is_runc() {
        return;
    }
    let pods = Pods::new();
    let base = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  PODX\n  containers:\n  - {name: c, image: ROOTFS, command: [sh, -c, 'trap \"exit 0\" TERM; while :; do sleep 0.1; done'] CONX}\n";
    let cases = [
        ("terminationGracePeriodSeconds: 9223372036854775807", "", "spec.terminationGracePeriodSeconds"),
        ("restartPolicy: Sometimes", "", "spec.restartPolicy"),
        ("hostname: \"a\\nb\"", "", "spec.hostname"),
        ("hostAliases: [{ip: \"1.2.3.4\\n6.6.6.6\", hostnames: [x]}]", "", "spec.hostAliases[0].ip"),
        ("restartPolicy: Never", ", resources: {limits: {cpu: -500m}}", "spec.containers[0].resources.limits.cpu"),
        (
            "restartPolicy: Never",
            ", resources: {limits: {memory: 99999999999999999999999Ti}}",
            "spec.containers[0].resources.limits.memory",
        ),
        ("restartPolicy: Never", ", ports: [{containerPort: 70000}]", "spec.containers[0].ports[0].containerPort"),
        ("restartPolicy: Never", ", args: [\"a\\0b\"]", "spec.containers[0].args[0]"),
        ("volumes: [{name: v, emptyDir: {sizeLimit: -1Gi}}]", "", "spec.volumes[0].emptyDir.sizeLimit"),
        ("restartPolicy: Never\n  restartPolicy: Always", "", "duplicate key"),
    ];
    for (extra, cextra, field) in cases {
        let (_, o) = pods.run("hostile", &base.replace("PODX", extra).replace("CONX", cextra));
        assert_fails_mentioning(&o, &[field]);
        let left = leftovers(pods.root.path());
        assert!(left.is_empty(), "{field}: {left:?}");
    }
}

/// The memory cgroup directory of a container without cgroupsPath.
fn default_memory_cgroup(env: &TestEnv) -> std::path::PathBuf {
    Path::new("/sys/fs/cgroup/memory").join(default_cgroup(env).strip_prefix("/").unwrap())
}

fn memory_limit(dir: &Path) -> String {
    read_all(&dir.join("memory.limit_in_bytes")).trim().to_string()
}

/// True on a cgroup v1 host (these tests read the v1 memory hierarchy).
fn v1_memory(test: &str) -> bool {
    if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        return true;
    }
    eprintln!("skipped {test}: the host is not cgroup v1");
    false
}

/// The same container id under two `--root` directories, neither config
/// setting linux.cgroupsPath: a root other than the default names its
/// containers' cgroups after itself (`/hull-<root hash>-<id>`, one
/// directory per hierarchy, no parent per root), so both run with their
/// own limits, and `delete --force` in one root leaves the other's
/// container running, and each delete removes its container's directories
/// only.
#[test]
fn same_id_under_two_roots_gets_two_cgroups() {
    if !require_root() || is_runc() || !v1_memory("same_id_under_two_roots_gets_two_cgroups") {
        return;
    }
    let mut a = TestEnv::new("tworoots");
    a.args(&["sleep", "60"]);
    a.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 64 << 20}});
    a.create_ok();
    assert_ok(&a.start());
    let mut b = TestEnv::new("tworoots");
    b.id = a.id.clone();
    b.args(&["sleep", "60"]);
    b.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 32 << 20}});
    b.create_ok();
    assert_ok(&b.start());
    assert_ne!(default_cgroup(&a), default_cgroup(&b));
    for (env, limit) in [(&a, 64u64 << 20), (&b, 32 << 20)] {
        let want = default_cgroup(env);
        let lines = read_all(Path::new(&format!("/proc/{}/cgroup", env.pid())));
        let memory = lines.lines().find_map(|l| {
            let mut f = l.splitn(3, ':').skip(1);
            (f.next() == Some("memory")).then(|| f.next()).flatten()
        });
        assert_eq!(memory.map(Path::new), Some(want.as_path()), "{lines}");
        assert_eq!(memory_limit(&default_memory_cgroup(env)), limit.to_string());
    }
    // A second container of a's root.
    let a2 = unique_id("tworoots-2");
    let b_path = a.bundle_path();
    assert_ok(&a.run_keep_io(&["create", "--bundle", b_path.to_str().unwrap(), &a2]));
    struct Delete<'a>(&'a TestEnv, &'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&["delete", "--force", self.1]);
        }
    }
    let a2_guard = Delete(&a, &a2);
    let a2_dir = Path::new("/sys/fs/cgroup/memory").join(format!("{}-{a2}", root_cgroup_tag(a.root.path()).unwrap()));
    assert!(a2_dir.is_dir(), "{}", a2_dir.display());
    assert_eq!(default_memory_cgroup(&a).parent(), a2_dir.parent(), "a root's containers get no parent directory");

    assert_ok(&b.run(&["delete", "--force", &b.id]));
    assert_eq!(a.status().as_deref(), Some("running"), "the other root's container was touched");
    assert_eq!(memory_limit(&default_memory_cgroup(&a)), (64u64 << 20).to_string());
    let b_tag = root_cgroup_tag(b.root.path()).unwrap();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let left = h.path().join(format!("{b_tag}-{}", b.id));
        assert!(!left.exists(), "{} is left", left.display());
    }
    assert!(!b.state_dir().exists());

    // Deleting one container of a root leaves the root's other one alone.
    assert_ok(&a.run(&["delete", "--force", &a.id]));
    assert!(!default_memory_cgroup(&a).exists());
    assert!(a2_dir.is_dir(), "{}", a2_dir.display());
    assert_ok(&a.run(&["delete", "--force", &a2]));
    assert!(!a2_dir.exists(), "{}", a2_dir.display());
    drop(a2_guard);
    assert_no_leftovers(&a);
    assert_no_leftovers(&b);
}

/// A container's cgroup is its own: one with another container's
/// processes in it (the same cgroupsPath under two roots) is refused, and
/// so is an existing directory at a default path, which someone else made;
/// the other container keeps its limit and nothing of the refused one is
/// left.
#[test]
fn a_cgroup_owned_by_another_container_is_refused() {
    if !require_root() || is_runc() || !v1_memory("a_cgroup_owned_by_another_container_is_refused") {
        return;
    }
    let mut a = TestEnv::new("owned");
    let path = format!("/{}-explicit", a.id);
    a.args(&["sleep", "60"]);
    a.config["linux"]["cgroupsPath"] = serde_json::json!(path);
    a.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 64 << 20}});
    a.create_ok();
    let mut b = TestEnv::new("owned");
    b.id = a.id.clone();
    b.args(&["sleep", "60"]);
    b.config["linux"]["cgroupsPath"] = serde_json::json!(path);
    b.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 32 << 20}});
    assert_fails_mentioning(&b.create(), &["already has 1 process"]);
    let dir = Path::new("/sys/fs/cgroup/memory").join(&path[1..]);
    assert_eq!(memory_limit(&dir), (64u64 << 20).to_string());
    assert_eq!(a.status().as_deref(), Some("created"), "the other root's container was touched");
    assert_ok(&a.run(&["delete", "--force", &a.id]));
    assert!(!dir.exists());

    // Its default directory made by someone else: refused, and left to
    // whoever made it.
    let mut c = TestEnv::new("owned-default");
    c.args(&["true"]);
    let theirs = default_memory_cgroup(&c);
    std::fs::create_dir_all(&theirs).unwrap();
    let o = c.create();
    let _ = std::fs::remove_dir(&theirs);
    assert_fails_mentioning(&o, &["already exists"]);
    assert_no_leftovers(&a);
    assert_no_leftovers(&b);
    assert_no_leftovers(&c);
}

/// A reader that has gone (`hull pod ps X | head -1`) ends a command
/// quietly: killed by SIGPIPE like any Unix tool, never a panic.
#[test]
fn commands_exit_quietly_on_a_broken_pipe() {
    let root = tempfile::tempdir().unwrap();
    for args in [&["features"][..], &["list"], &["pod", "ls"]] {
        let cwd = tempfile::tempdir().unwrap();
        assert_quiet_on_a_closed_pipe(
            std::process::Command::new(runtime())
                .arg("--root")
                .arg(root.path())
                .env("HULL_STATE_DIR", root.path().join("state"))
                .args(args)
                .current_dir(cwd.path()),
        );
    }
}
