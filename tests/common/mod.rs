//! Shared helpers for hull's privileged end-to-end tests.
//!
//! Every test drives the real runtime binary through its runc-compatible CLI.
//!
//! * runtime binary: `$HULL_TEST_RUNTIME`, else the `hull` binary cargo built
//!   (`CARGO_BIN_EXE_hull`).  Point `HULL_TEST_RUNTIME` at `/usr/sbin/runc` to
//!   check that a test describes runc's behaviour.
//! * rootfs: `$HULL_TEST_ROOTFS`, else `<crate>/target/fixtures/rootfs`
//!   (built by `rootfs-fixtures/build-rootfs.sh`).  It is shared by all tests
//!   and must never be written to: containers get `root.readonly = true`
//!   unless a test says otherwise, and tests that need a writable place mount
//!   a tmpfs or bind a host temp dir.
//!
//! Each [`TestEnv`] has its own unique container id, its own state root
//! (`--root`) and its own bundle, so tests run in parallel.  Dropping it kills
//! and force-deletes the container and removes its temp dirs, whatever
//! happened in the test.
//!
//! These tests need root; when not run as root they print a note and pass
//! without doing anything (see [`require_root`]).

#![allow(dead_code)]

pub mod certs;
pub mod pty;

use serde_json::{json, Value};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Time limit for a single runtime invocation.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for waiting on a state change (status, file appearing...).
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of the runtime under test.
pub fn runtime() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_TEST_RUNTIME") {
        return PathBuf::from(p);
    }
    match option_env!("CARGO_BIN_EXE_hull") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "no runtime to test: set HULL_TEST_RUNTIME=/path/to/runtime \
             (CARGO_BIN_EXE_hull is only set when these tests are built as part of the hull crate)"
        ),
    }
}

/// True when the runtime under test is runc (used to skip the few
/// assertions where hull deliberately follows the OCI spec and runc does not).
pub fn is_runc() -> bool {
    static IS_RUNC: OnceLock<bool> = OnceLock::new();
    *IS_RUNC.get_or_init(|| {
        let rt = runtime();
        if rt.file_name().map(|n| n.to_string_lossy().contains("runc")).unwrap_or(false) {
            return true;
        }
        Command::new(&rt)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).starts_with("runc"))
            .unwrap_or(false)
    })
}

/// The shared read-only rootfs (busybox).
pub fn rootfs() -> PathBuf {
    let p = match std::env::var_os("HULL_TEST_ROOTFS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures/rootfs"),
    };
    if !p.join("bin/busybox").exists() && !p.join("bin/sh").exists() {
        panic!(
            "test rootfs {} is missing (no bin/sh): build it with \
             `rootfs-fixtures/build-rootfs.sh target/fixtures/rootfs` or set HULL_TEST_ROOTFS",
            p.display()
        );
    }
    fs::canonicalize(&p).expect("canonicalize rootfs")
}

/// The end-to-end tests need root (namespaces, mounts, cgroups).  Returns
/// false (and the caller returns early) when not root.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipping: end-to-end runtime tests need root");
        false
    }
}

/// Run a command with stdin from /dev/null and stdout/stderr sent to files,
/// bounded by `timeout`.  Files rather than pipes: a container started by
/// `create`/`run -d`/`exec -d` inherits the runtime's stdio and would keep a
/// pipe open for its whole life.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    run_cmd_to(cmd, timeout, &out_path, &err_path)
}

/// Like [`run_cmd`], with the command's stdout/stderr written to the given
/// files (truncated first); the output read back from them is returned.
pub fn run_cmd_to(cmd: &mut Command, timeout: Duration, out_path: &Path, err_path: &Path) -> Output {
    let out = File::create(out_path).expect("create stdout file");
    let err = File::create(err_path).expect("create stderr file");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {}", cmd, e));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(st) => break st,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("command {:?} did not finish within {:?}", cmd, timeout);
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Output { status, stdout: fs::read(out_path).unwrap_or_default(), stderr: fs::read(err_path).unwrap_or_default() }
}

/// Poll `cond` every 20ms until it is true or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out after {:?} waiting for {}", timeout, what);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until `path` exists and return its contents.
pub fn wait_file(path: &Path, timeout: Duration) -> String {
    wait_for(&format!("file {}", path.display()), timeout, || path.exists());
    // give the writer a moment to finish the write it started
    std::thread::sleep(Duration::from_millis(50));
    fs::read_to_string(path).unwrap_or_default()
}

pub fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Describe an Output for assertion messages.
pub fn show(o: &Output) -> String {
    format!("status={:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", o.status, s(&o.stdout), s(&o.stderr))
}

#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(o.status.success(), "command failed:\n{}", show(o));
}

#[track_caller]
pub fn assert_fails(o: &Output) {
    assert!(!o.status.success(), "command unexpectedly succeeded:\n{}", show(o));
    assert!(!s(&o.stderr).trim().is_empty(), "command failed but printed nothing on stderr:\n{}", show(o));
}

/// Assert a failed command's stderr mentions (case-insensitively) at least
/// one of `needles`.
#[track_caller]
pub fn assert_fails_mentioning(o: &Output, needles: &[&str]) {
    assert_fails(o);
    let err = s(&o.stderr).to_lowercase();
    assert!(needles.iter().any(|n| err.contains(&n.to_lowercase())), "stderr should mention one of {:?}:\n{}", needles, show(o));
}

/// Make a unique container id from a test name.
pub fn unique_id(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    format!("hull-{}-{}-{}", clean, std::process::id(), n)
}

/// A temp dir under /tmp that any uid can use (tests drop privileges).
pub fn host_tempdir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("tempdir");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
    d
}

/// One container under test: id, state root, bundle, config.
pub struct TestEnv {
    pub id: String,
    pub root: tempfile::TempDir,
    pub bundle: tempfile::TempDir,
    /// config.json contents; written by [`TestEnv::write_config`] (called
    /// automatically by create/run).
    pub config: Value,
    /// Files receiving the stdout/stderr of the last create/run -d.
    pub out_file: PathBuf,
    pub err_file: PathBuf,
}

impl TestEnv {
    /// New environment with config.json produced by `RUNTIME spec` in the
    /// bundle, then edited: absolute rootfs, readonly root, no terminal,
    /// process.args = `sh` (tests set their own).
    pub fn new(name: &str) -> TestEnv {
        let id = unique_id(name);
        let root = tempfile::Builder::new().prefix("hull-root-").tempdir_in("/tmp").expect("root tempdir");
        let bundle = tempfile::Builder::new().prefix("hull-bundle-").tempdir_in("/tmp").expect("bundle tempdir");
        let o = run_cmd(Command::new(runtime()).arg("spec").current_dir(bundle.path()), CMD_TIMEOUT);
        assert_ok(&o);
        let text = fs::read_to_string(bundle.path().join("config.json")).expect("`spec` should write config.json in the current directory");
        let mut config: Value = serde_json::from_str(&text).expect("spec output is JSON");
        config["root"] = json!({"path": rootfs().to_str().unwrap(), "readonly": true});
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["sh"]);
        let out_file = bundle.path().join("container.out");
        let err_file = bundle.path().join("container.err");
        TestEnv { id, root, bundle, config, out_file, err_file }
    }

    pub fn bundle_path(&self) -> PathBuf {
        self.bundle.path().to_path_buf()
    }

    /// The state directory the runtime keeps for this container.
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join(&self.id)
    }

    /// Set process.args.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Set process.args to `sh -c SCRIPT`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Append a mount to config.mounts.
    pub fn add_mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }

    /// Bind-mount a host directory at `dest` (read-write).
    pub fn bind(&mut self, host: &Path, dest: &str) -> &mut Self {
        self.add_mount(json!({
            "destination": dest, "type": "bind", "source": host.to_str().unwrap(),
            "options": ["rbind", "rw"]
        }))
    }

    /// Mount a tmpfs over /tmp so the container has a writable place.
    pub fn writable_tmp(&mut self) -> &mut Self {
        self.add_mount(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=16m"]
        }))
    }

    /// Remove a namespace type from linux.namespaces.
    pub fn drop_namespace(&mut self, ty: &str) -> &mut Self {
        if let Some(a) = self.config["linux"]["namespaces"].as_array_mut() {
            a.retain(|n| n["type"] != ty);
        }
        self
    }

    /// Add (or replace) a namespace entry.
    pub fn set_namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.drop_namespace(ty);
        let mut ns = json!({ "type": ty });
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        self.config["linux"]["namespaces"].as_array_mut().unwrap().push(ns);
        self
    }

    pub fn write_config(&self) {
        fs::write(self.bundle.path().join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).expect("write config.json");
    }

    /// `RUNTIME --root ROOT ARGS...`, stdio to temp files, bounded.
    pub fn run(&self, args: &[&str]) -> Output {
        run_cmd(&mut self.cmd(args), CMD_TIMEOUT)
    }

    /// The command line without running it.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime());
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Run a command whose stdio the container will inherit (create, run -d,
    /// exec -d): output goes to this env's out/err files, which keep
    /// receiving the container's output afterwards.
    pub fn run_keep_io(&self, args: &[&str]) -> Output {
        run_cmd_to(&mut self.cmd(args), CMD_TIMEOUT, &self.out_file, &self.err_file)
    }

    /// What the container has written to its stdout so far (after create or
    /// run -d).
    pub fn container_stdout(&self) -> String {
        fs::read_to_string(&self.out_file).unwrap_or_default()
    }

    pub fn container_stderr(&self) -> String {
        fs::read_to_string(&self.err_file).unwrap_or_default()
    }

    /// `create --bundle B ID`.
    pub fn create(&self) -> Output {
        self.write_config();
        let b = self.bundle_path();
        self.run_keep_io(&["create", "--bundle", b.to_str().unwrap(), &self.id])
    }

    #[track_caller]
    pub fn create_ok(&self) {
        let o = self.create();
        assert_ok(&o);
    }

    pub fn start(&self) -> Output {
        self.run(&["start", &self.id])
    }

    #[track_caller]
    pub fn start_ok(&self) {
        assert_ok(&self.start());
    }

    /// `run --bundle B ID` in the foreground: returns when the container
    /// exits; its stdout/stderr are in the Output.
    pub fn run_fg(&self) -> Output {
        self.write_config();
        let b = self.bundle_path();
        self.run(&["run", "--bundle", b.to_str().unwrap(), &self.id])
    }

    /// `run --detach --bundle B ID`.
    pub fn run_detached(&self) -> Output {
        self.write_config();
        let b = self.bundle_path();
        self.run_keep_io(&["run", "--detach", "--bundle", b.to_str().unwrap(), &self.id])
    }

    pub fn state(&self) -> Output {
        self.run(&["state", &self.id])
    }

    #[track_caller]
    pub fn state_json(&self) -> Value {
        let o = self.state();
        assert_ok(&o);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("state output is not JSON ({}):\n{}", e, show(&o)))
    }

    /// Current status string, or None if `state` fails (container gone).
    pub fn status(&self) -> Option<String> {
        let o = self.state();
        if !o.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["status"].as_str().map(String::from)
    }

    pub fn wait_status(&self, want: &str) {
        wait_for(&format!("container {} to be {}", self.id, want), WAIT_TIMEOUT, || self.status().as_deref() == Some(want));
    }

    pub fn pid(&self) -> i32 {
        self.state_json()["pid"].as_i64().expect("state has pid") as i32
    }

    pub fn kill(&self, sig: &str) -> Output {
        self.run(&["kill", &self.id, sig])
    }

    pub fn delete(&self) -> Output {
        self.run(&["delete", &self.id])
    }

    /// `exec ID ARGS...` (foreground), output captured.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut a = vec!["exec", self.id.as_str()];
        a.extend_from_slice(args);
        self.run(&a)
    }

    /// Create + start, waiting for "running".
    pub fn start_running(&self) {
        self.create_ok();
        self.start_ok();
    }

    /// Run in the foreground and return stdout, asserting exit 0.
    #[track_caller]
    pub fn output_ok(&self) -> String {
        let o = self.run_fg();
        assert_ok(&o);
        s(&o.stdout)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = run_cmd(&mut self.cmd(&["kill", &self.id, "KILL"]), CMD_TIMEOUT);
        let _ = run_cmd(&mut self.cmd(&["delete", "--force", &self.id]), CMD_TIMEOUT);
        // TempDirs remove themselves; a bind mount left behind by a broken
        // runtime would make that fail, so detach anything under the bundle.
        if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
            let b = self.bundle.path().to_string_lossy().into_owned();
            let mut targets: Vec<String> = mi
                .lines()
                .filter_map(|l| l.split(' ').nth(4).map(String::from))
                .filter(|t| t.starts_with(&b))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let _ = nix::mount::umount2(t.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Check that nothing of the container remains on the host: no mount whose
/// line mentions the bundle path or the id, no cgroup directory named after
/// the id, no process whose cgroup or command line mentions the id, no state
/// directory.
///
/// Zombies are ignored (reaping them is up to whoever inherited them), and
/// the check is retried for up to 2 seconds so that processes already sent
/// SIGKILL can finish dying.
#[track_caller]
pub fn assert_no_leftovers(env: &TestEnv) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let problems = leftovers(env);
        if problems.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("leftovers of {}:\n{}", env.id, problems.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The list of things of `env`'s container still on the host (see
/// [`assert_no_leftovers`]).
pub fn leftovers(env: &TestEnv) -> Vec<String> {
    let mut problems = Vec::new();
    let bundle = env.bundle.path().to_string_lossy().into_owned();
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for l in mi.lines() {
        if l.contains(&bundle) || l.contains(&env.id) {
            problems.push(format!("mount left: {}", l));
        }
    }
    for d in find_dirs_named(Path::new("/sys/fs/cgroup"), &env.id, 4) {
        problems.push(format!("cgroup left: {}", d.display()));
    }
    if let Some(tag) = root_cgroup_tag(env.root.path()) {
        for d in find_dirs_named(Path::new("/sys/fs/cgroup"), &tag, 3) {
            problems.push(format!("cgroup of the root left: {}", d.display()));
        }
    }
    let me = std::process::id().to_string();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
                continue;
            }
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            if state == Some('Z') || state == Some('X') {
                continue;
            }
            let cg = fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = s(&cmdline).replace('\0', " ");
            if cg.contains(&env.id) || cmdline.contains(&env.id) {
                problems.push(format!("process left: pid {} cmdline {:?}", name, cmdline));
            }
        }
    }
    if env.state_dir().exists() {
        problems.push(format!("state dir left: {}", env.state_dir().display()));
    }
    problems
}

/// The cgroup, relative to each hierarchy's root, of `env`'s container
/// when its config has no linux.cgroupsPath: runc's `/<id>`, and hull's
/// `/<root tag>-<id>` (every test root is another than hull's default).
pub fn default_cgroup(env: &TestEnv) -> PathBuf {
    match root_cgroup_tag(env.root.path()) {
        Some(tag) => Path::new("/").join(format!("{tag}-{}", env.id)),
        None => Path::new("/").join(&env.id),
    }
}

/// The prefix of hull's cgroup directories for the containers of a
/// non-default root without cgroupsPath: `hull-` and 12 hex digits of the
/// SHA-256 of the canonical root path (None under runc, which has none).
pub fn root_cgroup_tag(root: &Path) -> Option<String> {
    use sha2::Digest as _;
    if is_runc() {
        return None;
    }
    let canonical = fs::canonicalize(root).ok()?;
    let digest = sha2::Sha256::digest(canonical.to_str()?.as_bytes());
    Some(format!("hull-{}", &format!("{digest:x}")[..12]))
}

fn find_dirs_named(dir: &Path, name: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if depth == 0 {
        return found;
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let ft = match e.file_type() {
                Ok(ft) => ft,
                Err(_) => continue,
            };
            if !ft.is_dir() {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(name) {
                found.push(p.clone());
            }
            found.extend(find_dirs_named(&p, name, depth - 1));
        }
    }
    found
}

/// Run `cmd` with its stdout a pipe whose reader is gone (`cmd | head -1`
/// once head has left): it must end quietly, killed by SIGPIPE like any
/// Unix tool or successfully, never with a panic.
#[track_caller]
pub fn assert_quiet_on_a_closed_pipe(cmd: &mut Command) {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    let err = s(&o.stderr);
    assert!(!err.contains("panicked") && o.status.code() != Some(101), "{cmd:?}: {:?}\n{err}", o.status);
    assert!(o.status.success() || o.status.signal() == Some(libc::SIGPIPE), "{cmd:?}: {:?}\n{err}", o.status);
}

/// The host's mounts whose line in mountinfo names `path`.
pub fn mounts_under(path: &str) -> Vec<String> {
    read_all(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter(|l| l.contains(path))
        .map(|l| format!("mount: {l}"))
        .collect()
}

/// Read a file until EOF, ignoring errors.
pub fn read_all(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Inode of a /proc/PID/ns/NAME link, e.g. "net:[4026531840]".
pub fn ns_link(pid: &str, ns: &str) -> String {
    fs::read_link(format!("/proc/{}/ns/{}", pid, ns))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Find the line of /proc/self/status-like text starting with `key:` and
/// return its value.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(&format!("{}:", key))).map(|l| l[key.len() + 1..].trim())
}

/// What a TCP server at `addr` sends before closing (tried for ~5 s, until
/// it says something); empty if it never does.
pub fn read_tcp(addr: std::net::SocketAddr) -> String {
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut buf);
            if !buf.is_empty() {
                return buf;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    String::new()
}

/// How many fds a process has open.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A process's parent (a container init's is its monitor, the subreaper).
pub fn parent_pid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(") ").next().unwrap().split(' ').nth(1).unwrap().parse().unwrap()
}

/// A container monitor's fd count once it is set up (its log open: it
/// opens it after reporting the container created).
pub fn settled_fds(monitor: i32, log: &Path) -> usize {
    wait_for("the monitor to open the log", Duration::from_secs(20), || {
        std::fs::read_dir(format!("/proc/{monitor}/fd"))
            .is_ok_and(|d| d.flatten().any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == log)))
    });
    open_fds(monitor)
}

/// Options for a runtime layer of a test's own under `dir` (state, run and
/// image dirs there), running this build's hull, with no CNI network.
pub fn runtime_options(dir: &std::path::Path) -> hull::runtime::RuntimeOptions {
    let no_cni = dir.join("no-cni");
    std::fs::create_dir_all(&no_cni).unwrap();
    let mut opts = hull::runtime::RuntimeOptions::new(dir.join("state"), dir.join("run"));
    opts.hull = runtime();
    opts.image_root = dir.join("images");
    opts.cni.conf_dir = no_cni;
    opts
}

/// A process's memory cgroup line (v1) or its unified one (v2), the
/// hierarchy that line is in, and the whole /proc/PID/cgroup text.
pub fn memory_cgroup(pid: i64) -> (String, &'static str, String) {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let memory = cgroups.lines().find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")));
    let hierarchy = if memory.is_some() { "/sys/fs/cgroup/memory" } else { "/sys/fs/cgroup" };
    let line = memory
        .or_else(|| cgroups.lines().find(|l| l.starts_with("0::")))
        .expect("a memory or unified cgroup line")
        .to_string();
    (line, hierarchy, cgroups)
}
