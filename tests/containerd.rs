//! hull as containerd's runc: Debian's containerd on a socket, root and
//! state of its own, the fixture image imported, and containers run with
//! `ctr run --runc-binary <hull>`, which makes containerd's runc shim call
//! hull exactly as it calls runc (create/start/state/kill/delete with
//! --log, --log-format json, --pid-file). Checked: exit code, output, a
//! memory limit, and a bidirectional (rshared) mount.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A containerd of our own, stopped and cleaned up on drop.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    namespace: String,
}

impl Containerd {
    fn start() -> Option<Containerd> {
        for tool in ["containerd", "ctr", "containerd-shim-runc-v2"] {
            if !Path::new("/usr/bin").join(tool).exists() {
                eprintln!("skipped: {tool} is not installed (make setup installs containerd)");
                return None;
            }
        }
        let dir = tempfile::Builder::new().prefix("hull-ctd-").tempdir_in("/tmp").unwrap();
        let d = dir.path().display().to_string();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/sock\"\n[ttrpc]\n  address = \"{d}/sock.ttrpc\"\n\
             [debug]\n  address = \"{d}/debug.sock\"\n[metrics]\n  address = \"\"\n"
        );
        fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = fs::File::create(dir.path().join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let c = Containerd { namespace: unique_id("ns"), dir, daemon };
        wait_for("containerd's socket", Duration::from_secs(20), || {
            run_cmd(Command::new("ctr").args(["--address", &c.sock(), "version"]), CMD_TIMEOUT).status.success()
        });
        Some(c)
    }

    fn sock(&self) -> String {
        self.dir.path().join("sock").display().to_string()
    }

    fn ctr(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ctr");
        cmd.args(["--address", &self.sock(), "--namespace", &self.namespace]).args(args);
        run_cmd(&mut cmd, Duration::from_secs(60))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr run --rm --runc-binary HULL [extra...] IMAGE ID ARGS...`.
    fn run(&self, id: &str, extra: &[&str], args: &[&str]) -> Output {
        let hull = runtime();
        let mut a = vec!["run", "--rm", "--runc-binary", hull.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["hull-test:latest", id]);
        a.extend_from_slice(args);
        self.ctr(&a)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.daemon.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let _ = self.daemon.wait();
        // Shims left behind by a failed test: ours name our socket.
        let sock = self.sock();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&sock) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        // Its snapshots may still be mounted.
        let d = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(String::from))
            .filter(|m| m.starts_with(&d))
            .collect();
        mounts.sort_by(|a, b| b.cmp(a));
        for m in mounts {
            let _ = run_cmd(Command::new("umount").args(["-l", &m]), CMD_TIMEOUT);
        }
    }
}

fn image_layout() -> Option<PathBuf> {
    let layout = rootfs().parent().unwrap().join("image-layout");
    if layout.join("index.json").exists() {
        Some(layout)
    } else {
        eprintln!("skipped: no fixture image at {} (make fixtures builds it)", layout.display());
        None
    }
}

#[test]
fn containerd_runs_containers_with_hull_as_its_runc() {
    if !require_root() {
        return;
    }
    let Some(layout) = image_layout() else { return };
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tar = ctd.dir.path().join("image.tar");
    assert_ok(&run_cmd(Command::new("tar").arg("-C").arg(&layout).arg("-cf").arg(&tar).arg("."), CMD_TIMEOUT));
    let o = ctd.ctr(&["images", "import", "--base-name", "hull-test", tar.to_str().unwrap()]);
    assert!(o.status.success(), "import: {}\n{}", show(&o), ctd.log());

    // Exit code and output.
    let o = ctd.run(&unique_id("out"), &[], &["sh", "-c", "echo out-$((6*7)); echo err-line >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}\n{}", show(&o), ctd.log());
    assert_eq!(s(&o.stdout).trim(), "out-42");
    assert!(s(&o.stderr).contains("err-line"), "{}", show(&o));

    // A memory limit: the container's own allocation beyond it is OOM-killed.
    let o = ctd.run(
        &unique_id("mem"),
        &["--memory-limit", "33554432"],
        &["sh", "-c", "head -c 100000000 /dev/zero | tail -c 90000000 > /dev/null"],
    );
    assert_eq!(o.status.code(), Some(137), "{}\n{}", show(&o), ctd.log());
    let o =
        ctd.run(&unique_id("mem-ok"), &["--memory-limit", "33554432"], &["sh", "-c", "head -c 1000000 /dev/zero | tail -c 900000 | wc -c"]);
    assert_eq!(s(&o.stdout).trim(), "900000", "{}", show(&o));

    // A bidirectional mount: rootfsPropagation rshared and an rshared
    // rbind, as containerd's CRI plugin writes them; a mount made inside
    // appears on the host.
    let vol = ctd.dir.path().join("vol");
    fs::create_dir_all(vol.join("sub")).unwrap();
    let v = vol.to_str().unwrap();
    assert_ok(&run_cmd(Command::new("mount").args(["--bind", v, v]), CMD_TIMEOUT));
    assert_ok(&run_cmd(Command::new("mount").args(["--make-shared", v]), CMD_TIMEOUT));
    let mount_opt = format!("type=bind,src={v},dst=/vol,options=rbind:rshared:rw");
    let o = ctd.run(
        &unique_id("bidir"),
        &["--rootfs-propagation", "rshared", "--cap-add", "CAP_SYS_ADMIN", "--mount", &mount_opt],
        &["sh", "-c", "mount -t tmpfs hull-ctd-bidir /vol/sub && echo mounted"],
    );
    assert!(o.status.success(), "{}\n{}", show(&o), ctd.log());
    assert_eq!(s(&o.stdout).trim(), "mounted");
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mi.lines().any(|l| l.contains(&format!(" {v}/sub ")) && l.contains("hull-ctd-bidir")),
        "the container's mount did not propagate to the host"
    );
    // Nothing of hull's is left in the runc root containerd gave it.
    let o = ctd.ctr(&["tasks", "ls", "-q"]);
    assert_eq!(s(&o.stdout).trim(), "", "{}", show(&o));
}
