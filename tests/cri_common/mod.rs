//! Helpers for the CRI tests: a real `hull daemon` (the built binary) with
//! its own socket, state, run and image dirs in a temp dir, and k8s-cri's
//! generated clients talking to it over the unix socket, as the kubelet
//! does.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::common::*;

pub use k8s_cri::v1 as cri;

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Daemon {
    /// A daemon on a fresh temp dir; `extra` flags are added (and kept for
    /// [`Daemon::restart`]).
    pub fn start(extra: &[&str]) -> Daemon {
        let mut d = Daemon::dry(extra);
        d.spawn();
        d
    }

    /// The same, not started (its [`Daemon::command`] is run by the test).
    pub fn dry(extra: &[&str]) -> Daemon {
        let dir = tempfile::Builder::new().prefix("hull-cri-").tempdir_in("/tmp").unwrap();
        let socket = dir.path().join("hull.sock");
        std::fs::create_dir_all(dir.path().join("no-cni")).unwrap();
        Daemon { dir, socket, child: None, extra: extra.iter().map(|s| s.to_string()).collect() }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    pub fn image_root(&self) -> PathBuf {
        self.path("state/images")
    }

    /// The command line every start of this daemon uses.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(runtime());
        cmd.arg("--root").arg(self.path("run")).arg("--log").arg(self.path("daemon.log")).arg("daemon");
        cmd.arg("--socket").arg(&self.socket).arg("--state-dir").arg(self.path("state"));
        if !self.extra.iter().any(|a| a == "--cni-conf-dir") {
            cmd.arg("--cni-conf-dir").arg(self.path("no-cni"));
        }
        cmd.arg("--log-level").arg("debug");
        cmd.args(&self.extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd
    }

    fn spawn(&mut self) {
        let child = self.command().spawn().expect("start hull daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("hull daemon exited with {st}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "hull daemon did not listen on {}: {}", self.socket.display(), self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// SIGTERM and the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        wait_child(&mut c, Duration::from_secs(30))
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same dirs (after [`Daemon::kill9`] or
    /// [`Daemon::terminate`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    pub async fn channel(&self) -> Channel {
        channel(&self.socket).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    /// `hull image import` of the fixture layout into this daemon's store.
    pub fn import_fixture(&self) {
        let layout = rootfs().parent().unwrap().join("image-layout");
        let o = run_cmd(
            Command::new(runtime())
                .arg("--image-root")
                .arg(self.image_root())
                .args(["image", "import"])
                .arg(&layout),
            CMD_TIMEOUT,
        );
        assert_ok(&o);
    }
}

pub fn wait_child(c: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("process {} did not exit in {timeout:?}", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Daemon {
    /// Remove every sandbox through the daemon (started again if the test
    /// stopped it), so that a failed test leaves no pod behind. Never panics.
    fn remove_all_pods(&mut self) {
        if self.child.is_none() {
            let Ok(c) = self.command().spawn() else {
                return;
            };
            self.child = Some(c);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
                let exited = self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)));
                if exited || Instant::now() > deadline {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let socket = self.socket.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                let Ok(ch) = try_channel(&socket).await else {
                    return;
                };
                let mut c = RuntimeServiceClient::new(ch);
                let Ok(list) = c.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }).await else {
                    return;
                };
                for p in list.into_inner().items {
                    let _ = c.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: p.id }).await;
                }
            })
        })
        .join();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.remove_all_pods();
        self.kill9();
    }
}

async fn try_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }))
        .await
}

/// A gRPC channel over the unix socket at `path`.
pub async fn channel(path: &Path) -> Channel {
    try_channel(path).await.expect("connect to the daemon's socket")
}

/// The gRPC code of a failed call (panics on success).
#[track_caller]
pub fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

#[track_caller]
pub fn err<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Status {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s,
    }
}
