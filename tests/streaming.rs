//! The streaming server against real containers, with test clients that
//! speak the protocols as crictl and the kubelet do: SPDY/3.1 (frames and
//! zlib header blocks from hull's own codec, driven by hand here, so the
//! client shares no connection code with the server) and WebSocket.
//! Needs root.
mod common;
mod cri_common;
mod stream_common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use hull::stream::exec::ExecTarget;
use hull::stream::portforward::PortForwardTarget;
use hull::stream::server::{Config, Server, Target};
use hull::stream::spdy::frame::Frame;
use serde_json::json;
use stream_common::*;
use tokio::net::TcpStream;

fn can_run() -> bool {
    if !require_root() {
        return false;
    }
    rootfs();
    true
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A running container to exec in, and a server to reach it through.
struct Fixture {
    env: TestEnv,
    server: Server,
    _work: tempfile::TempDir,
}

impl Fixture {
    async fn new(name: &str, script: &str, edit: impl FnOnce(&mut TestEnv)) -> Fixture {
        Fixture::new_with(name, script, edit, None).await
    }

    /// With `tls`, the server speaks TLS.
    async fn new_with(
        name: &str,
        script: &str,
        edit: impl FnOnce(&mut TestEnv),
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Fixture {
        let mut env = TestEnv::new(name);
        env.sh(script);
        edit(&mut env);
        env.start_running();
        let work = tempfile::tempdir().unwrap();
        let mut cfg = Config::new(work.path().to_path_buf());
        cfg.token_ttl = Duration::from_secs(5);
        cfg.tls = tls;
        let server = Server::start(cfg).await.unwrap();
        Fixture { env, server, _work: work }
    }

    fn exec_url(&self, cmd: &[&str], tty: bool, stdin: bool) -> String {
        self.server
            .issue(Target::Exec(ExecTarget {
                hull: runtime(),
                state_root: self.env.root.path().to_path_buf(),
                container: self.env.id.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            }))
            .unwrap()
    }
}

#[test]
fn spdy_exec_output_exit_code_and_stdin() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-spdy-exec", "exec sleep 1000", |_| {}).await;
        let url = f.exec_url(&["sh", "-c", "echo out; echo err >&2; exit 3"], false, false);
        let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let stderr = c.open(&[("streamType", "stderr")]).await;
        let got = c.collect(error).await;
        assert_eq!(got.get(&stdout).map(|v| v.as_slice()), Some(&b"out\n"[..]));
        assert_eq!(got.get(&stderr).map(|v| v.as_slice()), Some(&b"err\n"[..]));
        let st = status_json(&got[&error]);
        assert_eq!(st["status"], "Failure");
        assert_eq!(st["reason"], "NonZeroExitCode");
        assert_eq!(st["details"]["causes"][0]["message"], "3");

        // stdin to cat, then EOF (FIN): cat's output and a Success status.
        let url = f.exec_url(&["cat"], false, true);
        let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdin = c.open(&[("streamType", "stdin")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let stderr = c.open(&[("streamType", "stderr")]).await;
        c.send(Frame::Data { stream_id: stdin, fin: false, data: b"hello ".to_vec() }).await;
        c.send(Frame::Data { stream_id: stdin, fin: true, data: b"world".to_vec() }).await;
        let got = c.collect(error).await;
        assert_eq!(got.get(&stdout).map(|v| v.as_slice()), Some(&b"hello world"[..]));
        assert!(got.get(&stderr).is_none_or(|v| v.is_empty()));
        assert_eq!(status_json(&got[&error])["status"], "Success");
    });
}

#[test]
fn spdy_exec_ten_megabytes_intact_and_v2_protocol() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-spdy-big", "exec sleep 1000", |_| {}).await;
        let url = f.exec_url(&["sh", "-c", "dd if=/dev/zero bs=65536 count=160 2>/dev/null | tr '\\0' x"], false, false);
        let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let _stderr = c.open(&[("streamType", "stderr")]).await;
        let got = c.collect(error).await;
        let out = &got[&stdout];
        assert_eq!(out.len(), 10 * 1024 * 1024);
        assert!(out.iter().all(|b| *b == b'x'));

        // An older protocol: the error stream carries plain text, empty on success.
        let url = f.exec_url(&["sh", "-c", "exit 0"], false, false);
        let mut c = Client::connect(&url, "v2.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        c.open(&[("streamType", "stdout")]).await;
        c.open(&[("streamType", "stderr")]).await;
        let got = c.collect(error).await;
        assert!(got.get(&error).is_none_or(|v| v.is_empty()), "{got:?}");
    });
}

#[test]
fn spdy_exec_with_a_tty_sees_resize() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-spdy-tty", "exec sleep 1000", |_| {}).await;
        let url = f.exec_url(&["sh", "-c", "sleep 1; stty size; tty"], true, false);
        let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let resize = c.open(&[("streamType", "resize")]).await;
        c.send(Frame::Data { stream_id: resize, fin: false, data: br#"{"Width":101,"Height":33}"#.to_vec() })
            .await;
        let got = c.collect(error).await;
        let out = String::from_utf8_lossy(&got[&stdout]).to_string();
        assert!(out.contains("33 101"), "{out:?}");
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert_eq!(status_json(&got[&error])["status"], "Success");
    });
}

#[test]
fn tokens_are_single_use_bound_and_checked() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-tokens", "exec sleep 1000", |_| {}).await;
        let url = f.exec_url(&["true"], false, false);
        // Bound to its kind: the exec token is not a port-forward token.
        let wrong = url.replace("/exec/", "/portforward/");
        assert_eq!(upgrade(&wrong, &[("X-Stream-Protocol-Version", "portforward.k8s.io")]).await.0, 404);
        let (code, ..) = upgrade(&url, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
        assert_eq!(code, 101);
        // Used once: gone.
        assert_eq!(upgrade(&url, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await.0, 404);
        // No protocol in common: refused, and the token is spent.
        let url = f.exec_url(&["true"], false, false);
        assert_eq!(upgrade(&url, &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")]).await.0, 403);
        // Unknown paths and tokens.
        let base = f.server.base_url().to_string();
        assert_eq!(upgrade(&format!("{base}/nosuch/x"), &[]).await.0, 404);
        assert_eq!(upgrade(&format!("{base}/exec/0123"), &[]).await.0, 404);
        // Expired (the fixture's tokens live 5 s).
        let url = f.exec_url(&["true"], false, false);
        tokio::time::sleep(Duration::from_millis(5500)).await;
        assert_eq!(upgrade(&url, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await.0, 404);
    });
}

#[test]
fn a_vanished_client_leaves_no_process() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-vanish", "exec sleep 1000", |_| {}).await;
        let url = f.exec_url(&["sh", "-c", "echo started; exec sleep 777"], false, false);
        let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
        c.open(&[("streamType", "error")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        c.open(&[("streamType", "stderr")]).await;
        loop {
            match c.next().await {
                Some(Frame::Data { stream_id, data, .. }) if stream_id == stdout && data.starts_with(b"started") => break,
                Some(_) => {}
                None => panic!("closed"),
            }
        }
        let sleeping = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00777\x00"))
        };
        // "started" comes just before the shell execs sleep.
        wait_for("the exec'd sleep to run", Duration::from_secs(10), sleeping);
        drop(c);
        wait_for("the exec'd sleep to be killed", Duration::from_secs(10), || !sleeping());
    });
}

#[test]
fn websocket_exec_v5_with_stdin_close_and_v4() {
    if !can_run() {
        return;
    }
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    rt().block_on(async {
        let f = Fixture::new("stream-ws-exec", "exec sleep 1000", |_| {}).await;
        for proto in ["v5.channel.k8s.io", "v4.channel.k8s.io"] {
            let script = if proto.starts_with("v5") { "cat; exit 4" } else { "echo v4; exit 4" };
            let url = f.exec_url(&["sh", "-c", script], false, proto.starts_with("v5"));
            let (addr, _) = split_url(&url);
            let mut req = url.replace("http://", "ws://").into_client_request().unwrap();
            req.headers_mut().insert("Sec-WebSocket-Protocol", proto.parse().unwrap());
            let tcp = TcpStream::connect(&addr).await.unwrap();
            let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
            assert_eq!(resp.headers()["sec-websocket-protocol"], proto);
            if proto.starts_with("v5") {
                ws.send(Message::binary(b"\x00piped".to_vec())).await.unwrap();
                ws.send(Message::binary(vec![255, 0])).await.unwrap();
            }
            let mut chans: HashMap<u8, Vec<u8>> = HashMap::new();
            let mut closed = Vec::new();
            while let Some(Ok(m)) = tokio::time::timeout(T, ws.next()).await.unwrap() {
                match m {
                    Message::Binary(b) if b[0] == 255 => closed.push(b[1]),
                    Message::Binary(b) => chans.entry(b[0]).or_default().extend_from_slice(&b[1..]),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let want = if proto.starts_with("v5") { &b"piped"[..] } else { &b"v4\n"[..] };
            assert_eq!(chans.get(&1).map(|v| v.as_slice()), Some(want), "{proto}");
            let st = status_json(&chans[&3]);
            assert_eq!(st["details"]["causes"][0]["message"], "4", "{proto}");
            if proto.starts_with("v5") {
                assert!(closed.contains(&3), "v5 signals the error channel's close: {closed:?}");
            }
        }
    });
}

/// The container may bring its loopback up (`ip link set lo up`).
fn net_admin(env: &mut TestEnv) {
    for set in ["bounding", "effective", "permitted"] {
        env.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_NET_ADMIN"));
    }
}

#[test]
fn port_forward_over_spdy_and_websocket() {
    if !can_run() {
        return;
    }
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    rt().block_on(async {
        let f = Fixture::new(
            "stream-pf",
            "ip link set lo up && httpd -p 127.0.0.1:8081 -h /etc && while true; do echo hello-pf | nc -l -p 8080; done",
            net_admin,
        )
        .await;
        let netns = std::path::PathBuf::from(format!("/proc/{}/ns/net", f.env.pid()));
        let target = || Target::PortForward(PortForwardTarget { netns: netns.clone(), ports: vec![8080] });
        // Wait for the listener (nc starts after ip).
        tokio::time::sleep(Duration::from_millis(500)).await;

        let url = f.server.issue(target()).unwrap();
        let mut c = Client::connect(&url, "portforward.k8s.io").await;
        // Two requests on one connection: a refused port and the open one.
        let err_bad = c.open(&[("streamType", "error"), ("port", "8089"), ("requestID", "0")]).await;
        let _data_bad = c.open(&[("streamType", "data"), ("port", "8089"), ("requestID", "0")]).await;
        let got = c.collect(err_bad).await;
        let msg = String::from_utf8_lossy(&got[&err_bad]).to_string();
        assert!(msg.contains("8089") && msg.to_lowercase().contains("refused"), "{msg}");
        let err = c.open(&[("streamType", "error"), ("port", "8080"), ("requestID", "1")]).await;
        let data = c.open(&[("streamType", "data"), ("port", "8080"), ("requestID", "1")]).await;
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            match c.next().await {
                Some(Frame::Data { stream_id, data: d, .. }) if stream_id == data => got.extend_from_slice(&d),
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(_) => {}
                None => panic!("closed"),
            }
        }
        assert_eq!(got, b"hello-pf\n");
        // The client's FIN on the data stream ends the forwarded connection,
        // and with it the request's error stream.
        c.send(Frame::Data { stream_id: data, fin: true, data: vec![] }).await;
        let rest = c.collect(err).await;
        assert!(rest.get(&err).is_none_or(|v| v.is_empty()), "{rest:?}");
        // A busybox httpd in the pod answers a GET through the same
        // connection (HTTP/1.0: it closes after the answer, which ends the
        // data stream).
        let _err_http = c.open(&[("streamType", "error"), ("port", "8081"), ("requestID", "2")]).await;
        let data_http = c.open(&[("streamType", "data"), ("port", "8081"), ("requestID", "2")]).await;
        c.send(Frame::Data { stream_id: data_http, fin: false, data: b"GET /hostname HTTP/1.0\r\n\r\n".to_vec() })
            .await;
        let answer = c.collect(data_http).await;
        let answer = String::from_utf8_lossy(answer.get(&data_http).map(Vec::as_slice).unwrap_or_default()).to_string();
        assert!(answer.starts_with("HTTP/1.") && answer.contains(" 200 "), "{answer:?}");

        // WebSocket, v4.portforward.k8s.io: port-prefixed channels 0 and 1
        // (after the container's loop has started its next nc).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = f.server.issue(target()).unwrap();
        let (addr, _) = split_url(&url);
        let mut req = format!("{}?port=8080", url.replace("http://", "ws://")).into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "v4.portforward.k8s.io".parse().unwrap());
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        let mut data = Vec::new();
        let mut first = HashMap::new();
        while let Some(Ok(m)) = tokio::time::timeout(T, ws.next()).await.unwrap() {
            if let Message::Binary(b) = m {
                if let std::collections::hash_map::Entry::Vacant(e) = first.entry(b[0]) {
                    e.insert(b[1..].to_vec());
                } else if b[0] == 1 {
                    panic!("port-forward error: {}", String::from_utf8_lossy(&b[1..]));
                } else if b[0] == 0 {
                    data.extend_from_slice(&b[1..]);
                    if data.ends_with(b"\n") {
                        break;
                    }
                }
            }
        }
        assert_eq!(first[&0], 8080u16.to_le_bytes());
        assert_eq!(first[&1], 8080u16.to_le_bytes());
        assert_eq!(data, b"hello-pf\n");
    });
}

#[test]
fn fifty_concurrent_execs_leave_nothing_behind() {
    if !can_run() {
        return;
    }
    rt().block_on(async {
        let f = Fixture::new("stream-fifty", "exec sleep 1000", |_| {}).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let url = f.exec_url(&["echo", &format!("n{i}")], false, false);
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
                let error = c.open(&[("streamType", "error")]).await;
                let stdout = c.open(&[("streamType", "stdout")]).await;
                c.open(&[("streamType", "stderr")]).await;
                let got = c.collect(error).await;
                (String::from_utf8_lossy(&got[&stdout]).to_string(), status_json(&got[&error])["status"].clone())
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let (out, status) = t.await.unwrap();
            assert_eq!(out, format!("n{i}\n"));
            assert_eq!(status, "Success");
        }
        let id = f.env.id.clone();
        let execs = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                        let c = String::from_utf8_lossy(&c).to_string();
                        c.contains("\0exec\0") && c.contains(&id)
                    })
                })
                .count()
        };
        wait_for("every hull exec to end", Duration::from_secs(10), || execs() == 0);
        // Per-session files are gone too.
        wait_for("session dirs removed", Duration::from_secs(10), || std::fs::read_dir(f._work.path()).unwrap().next().is_none());
    });
}

/// Whether a socket in the network namespace of `pid` listens on TCP `port`.
fn listens(pid: i32, port: u16) -> bool {
    let hex = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let v: Vec<&str> = l.split_whitespace().collect();
                v.len() > 3 && v[1].ends_with(&hex) && v[3] == "0A"
            })
        })
    })
}

/// Read SPDY data streams until each of `want` (data stream, error
/// stream, bytes) got its bytes; fail on a reset, on data on an error
/// stream, or on the connection closing.
async fn read_streams(c: &mut Client, want: &[(u32, u32, usize)]) -> HashMap<u32, Vec<u8>> {
    let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
    while want.iter().any(|(d, _, n)| got.get(d).map_or(0, Vec::len) < *n) {
        match c.next().await {
            Some(Frame::Data { stream_id, data, .. }) if want.iter().any(|w| w.1 == stream_id) && !data.is_empty() => {
                panic!("error stream {stream_id}: {}", String::from_utf8_lossy(&data))
            }
            Some(Frame::Data { stream_id, data, .. }) => got.entry(stream_id).or_default().extend_from_slice(&data),
            Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
            Some(_) => {}
            None => panic!("closed with {got:?}"),
        }
    }
    got
}

#[test]
fn port_forward_spdy_tunnelled_in_websocket() {
    if !can_run() {
        return;
    }
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    rt().block_on(async {
        // An echo server that forks per connection, so two forwarded
        // connections are served at once.
        let f = Fixture::new("stream-tunnel", "ip link set lo up && exec nc -ll -p 8080 -e cat", net_admin).await;
        let netns = std::path::PathBuf::from(format!("/proc/{}/ns/net", f.env.pid()));
        wait_for("nc to listen on 8080", Duration::from_secs(20), || listens(f.env.pid(), 8080));
        let url = f.server.issue(Target::PortForward(PortForwardTarget { netns, ports: vec![8080] })).unwrap();
        let (addr, _) = split_url(&url);
        let mut req = url.replace("http://", "ws://").into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io".parse().unwrap());
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], "SPDY/3.1+portforward.k8s.io");
        let mut c = Client::tunnel(ws);

        // A refused port reports on its own error stream; the connection
        // goes on.
        let err_bad = c.open(&[("streamType", "error"), ("port", "8089"), ("requestID", "0")]).await;
        c.open(&[("streamType", "data"), ("port", "8089"), ("requestID", "0")]).await;
        let got = c.collect(err_bad).await;
        let msg = String::from_utf8_lossy(&got[&err_bad]).to_string();
        assert!(msg.contains("8089") && msg.to_lowercase().contains("refused"), "{msg}");

        // Two requests in parallel on the one connection, each its own
        // connection to the echo server.
        let mut reqs = Vec::new();
        for id in ["1", "2"] {
            let err = c.open(&[("streamType", "error"), ("port", "8080"), ("requestID", id)]).await;
            let data = c.open(&[("streamType", "data"), ("port", "8080"), ("requestID", id)]).await;
            reqs.push((err, data));
        }
        for (i, (_, data)) in reqs.iter().enumerate() {
            c.send(Frame::Data { stream_id: *data, fin: false, data: format!("ping-{i}\n").into_bytes() }).await;
        }
        let want: Vec<(u32, u32, usize)> = reqs.iter().map(|(err, data)| (*data, *err, "ping-0\n".len())).collect();
        let got = read_streams(&mut c, &want).await;
        for (i, (_, data)) in reqs.iter().enumerate() {
            assert_eq!(got[data], format!("ping-{i}\n").as_bytes());
        }
        // 1 MiB through one of them and back, intact (flow control both
        // ways inside the tunnel).
        let (err, data) = reqs[0];
        let big: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        // The client keeps to the windows the server gives (its SETTINGS'
        // initial window per stream, the SPDY/3.1 default of 64 KiB for
        // the session, then its WINDOW_UPDATEs); the pings spent 14 bytes
        // of the session's window.
        let (mut sent, mut back) = (0, Vec::new());
        let (mut window, mut session) = (c.peer_window as usize, 65536usize - 14);
        while back.len() < big.len() {
            let n = (big.len() - sent).min(16 * 1024).min(window).min(session);
            if n > 0 {
                c.send(Frame::Data { stream_id: data, fin: false, data: big[sent..sent + n].to_vec() }).await;
                sent += n;
                window -= n;
                session -= n;
                continue;
            }
            match c.next().await {
                Some(Frame::Data { stream_id, data: d, .. }) if stream_id == data => {
                    let n = d.len() as u32;
                    if n > 0 {
                        c.send(Frame::WindowUpdate { stream_id, delta: n }).await;
                        c.send(Frame::WindowUpdate { stream_id: 0, delta: n }).await;
                    }
                    back.extend_from_slice(&d);
                }
                Some(Frame::WindowUpdate { stream_id, delta }) if stream_id == data => window += delta as usize,
                Some(Frame::WindowUpdate { stream_id: 0, delta }) => session += delta as usize,
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(Frame::Data { stream_id, data: d, .. }) if stream_id == err && !d.is_empty() => {
                    panic!("error stream: {}", String::from_utf8_lossy(&d))
                }
                Some(_) => {}
                None => panic!("closed after {} bytes back", back.len()),
            }
        }
        assert!(back == big, "the echoed megabyte differs");
        // The client's FIN ends that forwarded connection (cat sees EOF),
        // and with it the request's error stream, empty.
        c.send(Frame::Data { stream_id: data, fin: true, data: vec![] }).await;
        let rest = c.collect(err).await;
        assert!(rest.get(&err).is_none_or(|v| v.is_empty()), "{rest:?}");
    });
}

/// ca.pem and the server's certificate for 127.0.0.1 (by the test CA), and
/// the streaming server's TLS config from them.
fn test_ca(dir: &std::path::Path) -> std::sync::Arc<rustls::ServerConfig> {
    common::certs::make_certs(dir);
    hull::stream::tls::server_config(&dir.join("server.pem"), &dir.join("server.key")).unwrap()
}

#[test]
fn exec_over_tls_with_a_test_ca() {
    if !can_run() {
        return;
    }
    if !common::certs::have_openssl() {
        eprintln!("skipped: openssl not installed (the test CA is made with it)");
        return;
    }
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    rt().block_on(async {
        let certs = tempfile::tempdir().unwrap();
        let tls = test_ca(certs.path());
        let f = Fixture::new_with("stream-tls", "exec sleep 1000", |_| {}, Some(tls)).await;
        assert!(f.server.base_url().starts_with("https://127.0.0.1:"), "{}", f.server.base_url());
        let client = tls_client(&certs.path().join("ca.pem"));

        // SPDY over TLS, as crictl and the kubelet with a TLS streaming server.
        let url = f.exec_url(&["sh", "-c", "echo over-tls; read x; echo got-$x >&2; exit 6"], false, true);
        assert!(url.starts_with("https://"), "{url}");
        let mut c = Client::connect_on(dial(&url, Some(&client)).await, &url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        let stdin = c.open(&[("streamType", "stdin")]).await;
        let stdout = c.open(&[("streamType", "stdout")]).await;
        let stderr = c.open(&[("streamType", "stderr")]).await;
        c.send(Frame::Data { stream_id: stdin, fin: true, data: b"secret\n".to_vec() }).await;
        let got = c.collect(error).await;
        assert_eq!(got.get(&stdout).map(|v| v.as_slice()), Some(&b"over-tls\n"[..]));
        assert_eq!(got.get(&stderr).map(|v| v.as_slice()), Some(&b"got-secret\n"[..]));
        assert_eq!(status_json(&got[&error])["details"]["causes"][0]["message"], "6");

        // WebSocket over TLS (wss), v5.
        let url = f.exec_url(&["sh", "-c", "echo wss"], false, false);
        let io = dial(&url, Some(&client)).await;
        let mut req = url.replace("https://", "wss://").into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", "v5.channel.k8s.io".parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::client_async(req, io).await.unwrap();
        let mut out = Vec::new();
        while let Some(Ok(m)) = tokio::time::timeout(T, ws.next()).await.unwrap() {
            match m {
                Message::Binary(b) if b[0] == 1 => out.extend_from_slice(&b[1..]),
                Message::Close(_) => break,
                _ => {}
            }
        }
        assert_eq!(out, b"wss\n");
        let _ = ws.close(None).await;

        // A client that does not trust the test CA gets no connection,
        // and plain HTTP on the TLS port gets no upgrade.
        let url = f.exec_url(&["true"], false, false);
        let stranger = tls_client(&certs.path().join("server.pem"));
        let e = try_dial(&url, Some(&stranger)).await.err().expect("a handshake with an unknown issuer");
        assert!(e.to_string().to_lowercase().contains("issuer") || e.to_string().contains("certificate"), "{e}");
        let (addr, path) = split_url(&url);
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(T, tcp.read_to_end(&mut answer)).await.expect("the server closes a plain-text connection");
        assert!(!String::from_utf8_lossy(&answer).contains(" 101 "), "{}", String::from_utf8_lossy(&answer));
        // The token was not spent by those: a trusting client still execs.
        let mut c = Client::connect_on(dial(&url, Some(&client)).await, &url, "v4.channel.k8s.io").await;
        let error = c.open(&[("streamType", "error")]).await;
        c.open(&[("streamType", "stdout")]).await;
        c.open(&[("streamType", "stderr")]).await;
        assert_eq!(status_json(&c.collect(error).await[&error])["status"], "Success");
    });
}

#[test]
fn daemon_serves_streams_over_tls_from_its_flags() {
    if !can_run() {
        return;
    }
    if !common::certs::have_openssl() {
        eprintln!("skipped: openssl not installed (the test CA is made with it)");
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    common::certs::make_certs(certs.path());
    let (cert, key) = (certs.path().join("server.pem"), certs.path().join("server.key"));
    let flags = ["--stream-tls-cert", cert.to_str().unwrap(), "--stream-tls-key", key.to_str().unwrap()];
    let mut d = cri_common::Daemon::start(&flags);
    // The daemon logs its streaming base URL (just after its socket is
    // up); the CRI's URLs are under it.
    let url_in_log = |log: String| {
        log.lines().find_map(|l| {
            l.split_once("url=")
                .map(|(_, u)| u.split_whitespace().next().unwrap().trim_matches('"').to_string())
        })
    };
    wait_for("the streaming URL in the daemon's log", Duration::from_secs(20), || url_in_log(d.log()).is_some());
    let base = url_in_log(d.log()).unwrap();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    rt().block_on(async {
        let client = tls_client(&certs.path().join("ca.pem"));
        let url = format!("{base}/exec/0123");
        let (code, ..) = upgrade_on(dial(&url, Some(&client)).await, &url, &[]).await;
        assert_eq!(code, 404, "an unknown token, answered over TLS");
    });
    assert!(d.terminate().success());
    // Half a pair, or a key that is not there: refused, naming it.
    let o = run_cmd(Command::new(runtime()).args(["daemon", "--stream-tls-cert", cert.to_str().unwrap()]), CMD_TIMEOUT);
    assert_fails_mentioning(&o, &["--stream-tls-key"]);
    let missing = certs.path().join("nokey.pem");
    let bad = ["--stream-tls-cert", cert.to_str().unwrap(), "--stream-tls-key", missing.to_str().unwrap()];
    let sock = d.path("other.sock");
    let o = run_cmd(Command::new(runtime()).args(["daemon", "--socket", sock.to_str().unwrap()]).args(bad), CMD_TIMEOUT);
    assert_fails_mentioning(&o, &["stream_tls", "nokey.pem"]);
    assert!(!sock.exists(), "nothing bound");
}
