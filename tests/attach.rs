//! Attach through the streaming server to containers of the runtime layer
//! whose stdio their monitors hold: WebSocket and SPDY clients driven by
//! hand, as the kubelet and crictl speak them. Needs root.
mod common;
mod stream_common;

use std::collections::HashMap;
use std::time::Duration;

use common::{open_fds, parent_pid, require_root, rootfs, settled_fds, unique_id, wait_for};
use futures_util::{SinkExt, StreamExt};
use hull::runtime::*;
use hull::stream::server::{Config, Server, Target};
use hull::stream::session::AttachTarget;
use hull::stream::spdy::frame::Frame;
use stream_common::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A runtime on its own directories with one sandbox, and a streaming
/// server; the sandbox is removed on drop.
struct Fixture {
    rt: Runtime,
    sandbox: SandboxId,
    server: Server,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(name: &str) -> Fixture {
        let dir = tempfile::Builder::new().prefix("hull-attach").tempdir_in("/tmp").unwrap();
        let rt = Runtime::open(common::runtime_options(dir.path())).unwrap();
        let cfg = SandboxConfig {
            metadata: SandboxMetadata {
                name: unique_id(name).replace('_', "-").to_lowercase(),
                namespace: "attach-test".into(),
                uid: unique_id("uid"),
                attempt: 0,
            },
            ..Default::default()
        };
        let sandbox = tokio::task::block_in_place(|| rt.create_sandbox(&cfg)).unwrap();
        let server = Server::start(Config::new(dir.path().join("stream"))).await.unwrap();
        Fixture { rt, sandbox, server, dir }
    }

    /// A started container running `script` with stdin (and a tty).
    fn container(&self, name: &str, script: &str, tty: bool, stdin_once: bool) -> ContainerId {
        let mut c = ContainerConfig {
            metadata: ContainerMetadata { name: name.into(), attempt: 0 },
            image: ImageSpec { image: rootfs().display().to_string() },
            command: vec!["sh".into(), "-c".into(), script.into()],
            stdin: true,
            stdin_once,
            tty,
            ..Default::default()
        };
        c.security_context.readonly_rootfs = true;
        tokio::task::block_in_place(|| {
            let id = self.rt.create_container(&self.sandbox, &c).unwrap();
            self.rt.start_container(&id).unwrap();
            id
        })
    }

    fn url(&self, id: &ContainerId, stdin: bool) -> String {
        let point = self.rt.attach(id).unwrap();
        let stderr = !point.tty;
        self.server.issue(Target::Attach(AttachTarget { point, stdin, stdout: true, stderr })).unwrap()
    }

    fn state(&self, id: &ContainerId) -> ContainerStatus {
        self.rt.container_status(id).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.rt.remove_sandbox(&self.sandbox);
        let _ = &self.dir;
    }
}

async fn ws_connect(url: &str, proto: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let (addr, _) = split_url(url);
    let mut req = url.replace("http://", "ws://").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], proto);
    ws
}

/// Channel data of a WebSocket session until `until` holds `want` (or the
/// server closes).
async fn ws_read(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, chans: &mut HashMap<u8, Vec<u8>>, until: u8, want: &str) {
    while !String::from_utf8_lossy(chans.get(&until).map(|v| v.as_slice()).unwrap_or(b"")).contains(want) {
        match tokio::time::timeout(T, ws.next()).await.expect("server silent") {
            Some(Ok(Message::Binary(b))) if !b.is_empty() => chans.entry(b[0]).or_default().extend_from_slice(&b[1..]),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_attach_with_stdin_once_gets_eof_and_success() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("ws-attach").await;
    let id = f.container("cat", "cat; echo eof-$?", false, true);
    let mut ws = ws_connect(&f.url(&id, true), "v5.channel.k8s.io").await;
    ws.send(Message::binary(b"\x00piped\n".to_vec())).await.unwrap();
    let mut chans = HashMap::new();
    ws_read(&mut ws, &mut chans, 1, "piped\n").await;
    // v5's close of the stdin channel: with stdin_once the container's stdin
    // closes, cat ends, and so does the container and the attach.
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    ws_read(&mut ws, &mut chans, 3, "}").await;
    assert_eq!(String::from_utf8_lossy(&chans[&1]), "piped\neof-0\n");
    assert_eq!(status_json(&chans[&3])["status"], "Success");
    wait_for("the container to exit", Duration::from_secs(20), || f.state(&id).state == ContainerState::Exited);
    assert_eq!(f.state(&id).exit_code, Some(0));
    // Nothing to attach to any more.
    assert_eq!(f.rt.attach(&id).unwrap_err().kind(), ErrorKind::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_on_a_tty_then_both_vanish_and_the_container_runs_on() {
    if !require_root() {
        return;
    }
    let f = Fixture::new("spdy-attach").await;
    let id = f.container("sh", "exec sh", true, false);
    let st = f.state(&id);
    let monitor = parent_pid(st.pid.unwrap());
    let before = settled_fds(monitor, &st.log_path);

    // An output-only WebSocket client (v4) watches.
    let mut watcher = ws_connect(&f.url(&id, false), "v4.channel.k8s.io").await;
    // A SPDY client as crictl attach -it.
    let mut c = Client::connect(&f.url(&id, true), "v4.channel.k8s.io").await;
    let _error = c.open(&[("streamType", "error")]).await;
    let stdin = c.open(&[("streamType", "stdin")]).await;
    let stdout = c.open(&[("streamType", "stdout")]).await;
    let resize = c.open(&[("streamType", "resize")]).await;
    wait_for("both clients attached", Duration::from_secs(30), || open_fds(monitor) == before + 2);
    c.send(Frame::Data { stream_id: resize, fin: false, data: br#"{"Width":120,"Height":40}"#.to_vec() })
        .await;
    c.send(Frame::Data { stream_id: stdin, fin: false, data: b"stty size; echo both-$((2+3))\n".to_vec() })
        .await;
    let out = c.read_until(stdout, "both-5").await;
    assert!(out.contains("40 120"), "{out:?}");
    let mut chans = HashMap::new();
    ws_read(&mut watcher, &mut chans, 1, "both-5").await;
    assert!(String::from_utf8_lossy(&chans[&1]).contains("40 120"));

    // Both vanish without a word: the container runs on, the monitor holds
    // no more fds than before, the server no session state.
    drop(c);
    drop(watcher);
    wait_for("the monitor back to its fds", Duration::from_secs(20), || open_fds(monitor) == before);
    assert_eq!(f.state(&id).state, ContainerState::Running);
    let work = f.dir.path().join("stream");
    assert!(std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0) == 0, "session files left in {}", work.display());
    // And a later attach still works.
    let mut again = ws_connect(&f.url(&id, true), "v5.channel.k8s.io").await;
    again.send(Message::binary(b"\x00echo again-$((1+1))\n".to_vec())).await.unwrap();
    let mut chans = HashMap::new();
    ws_read(&mut again, &mut chans, 1, "again-2").await;
    assert!(String::from_utf8_lossy(&chans[&1]).contains("again-2"));
}
