//! Helpers for the image tests: the fixture image layout, a store of
//! one's own per test, and a local registry (Debian's docker-registry).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// The OCI layout of the fixture image (built on first use).
pub fn image_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let rootfs = rootfs();
            let out = rootfs.parent().unwrap().join("image-layout");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-fixtures/build-image.sh");
            let o = run_cmd(Command::new(script).arg(&rootfs).arg(&out), std::time::Duration::from_secs(120));
            assert_ok(&o);
            out
        })
        .clone()
}

pub fn fixture_digests() -> Value {
    serde_json::from_slice(&std::fs::read(image_layout().join("fixture.json")).unwrap()).unwrap()
}

pub struct Images {
    pub dir: tempfile::TempDir,
}

impl Images {
    pub fn new() -> Images {
        Images { dir: tempfile::Builder::new().prefix("hull-images-").tempdir().unwrap() }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    pub fn hull(&self, args: &[&str]) -> Output {
        run_cmd(Command::new(runtime()).arg("--image-root").arg(self.root()).arg("image").args(args), CMD_TIMEOUT)
    }
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.hull(args);
        assert_ok(&o);
        s(&o.stdout)
    }
    pub fn inspect(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["inspect", name])).unwrap()
    }
    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.root().join(sub)).map(|d| d.count()).unwrap_or(0)
    }
}

/// Debian's docker-registry on 127.0.0.1, its config and storage in a temp
/// dir; killed on drop.
pub struct Registry {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    /// None (with a note) when docker-registry is not installed.
    pub fn start() -> Option<Registry> {
        Self::start_with(None, "")
    }

    /// A registry serving `storage` (default: its own, in its temp dir),
    /// with `http_extra` (YAML lines indented under `http:`, e.g. `tls:`).
    pub fn start_with(storage: Option<&Path>, http_extra: &str) -> Option<Registry> {
        let bin = Path::new("/usr/bin/docker-registry");
        if !bin.exists() {
            eprintln!("skipped: /usr/bin/docker-registry not installed (make setup)");
            return None;
        }
        let mut dir = tempfile::Builder::new().prefix("hull-registry-").tempdir().unwrap();
        for _attempt in 0..5 {
            let port = free_port();
            let root = storage.map(Path::to_path_buf).unwrap_or_else(|| dir.path().join("storage"));
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{http_extra}",
                root.display()
            );
            std::fs::write(dir.path().join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let child = Command::new(bin)
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut reg = Registry { dir, port, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut tries = 0;
            while Instant::now() < deadline && tries < 200 {
                tries += 1;
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(reg);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start; see its log");
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// skopeo copy of a ref of the fixture layout to REPO:TAG here.
    pub fn push(&self, layout_ref: &str, dest: &str, all: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{layout_ref}", image_layout().display()))
            .arg(format!("docker://{}/{dest}", self.host()));
        let o = run_cmd(&mut cmd, Duration::from_secs(120));
        assert_ok(&o);
    }

    /// The registry's file holding blob `digest`.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn skopeo_present() -> bool {
    if Path::new("/usr/bin/skopeo").exists() {
        return true;
    }
    eprintln!("skipped: skopeo not installed (make setup)");
    false
}
