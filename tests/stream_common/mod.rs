//! Clients of the streaming server for the tests: a hand-driven SPDY/3.1
//! client (frames and zlib header blocks from hull's own codec, driven here
//! so the client shares no connection code with the server), over TCP, TLS
//! or tunnelled in WebSocket binary messages.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hull::stream::spdy::frame::{self, Frame};
use hull::stream::spdy::headers::{HeaderDecoder, HeaderEncoder, Headers};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const T: Duration = Duration::from_secs(20);

/// A client connection: TCP or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<X: AsyncRead + AsyncWrite + Unpin + Send> Io for X {}
pub type BoxIo = Box<dyn Io>;

/// Split "http://host:port/path" (or https) into address and path.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    (addr.to_string(), format!("/{path}"))
}

/// A rustls client config trusting only the CA certificate in `ca_pem`.
pub fn tls_client(ca_pem: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Connect to the URL's address: plain TCP for http, TLS (verified with
/// `tls`, for the URL's host) for https.
pub async fn try_dial(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> std::io::Result<BoxIo> {
    let (addr, _) = split_url(url);
    let tcp = TcpStream::connect(&addr).await?;
    // As Go's clients (crictl, the kubelet): no Nagle delay on small frames.
    tcp.set_nodelay(true)?;
    if !url.starts_with("https://") {
        return Ok(Box::new(tcp));
    }
    let cfg = tls.expect("an https URL needs a TLS client config").clone();
    let host = addr.rsplit_once(':').unwrap().0.trim_start_matches('[').trim_end_matches(']').to_string();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let s = tokio::time::timeout(T, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp))
        .await
        .expect("TLS handshake")?;
    Ok(Box::new(s))
}

pub async fn dial(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> BoxIo {
    try_dial(url, tls).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Send an upgrade request; returns the status line's code, the response
/// headers, the connection and any bytes read past the headers.
pub async fn upgrade(url: &str, extra: &[(&str, &str)]) -> (u16, HashMap<String, String>, BoxIo, Vec<u8>) {
    upgrade_on(dial(url, None).await, url, extra).await
}

/// [`upgrade`] on a connection made by [`dial`].
pub async fn upgrade_on(mut tcp: BoxIo, url: &str, extra: &[(&str, &str)]) -> (u16, HashMap<String, String>, BoxIo, Vec<u8>) {
    let (addr, path) = split_url(url);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(T, tcp.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "server closed during the handshake: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, tcp, buf[end..].to_vec())
}

/// What SPDY frames travel on.
enum Transport {
    Bytes(BoxIo),
    /// KEP-4006: the SPDY byte stream in WebSocket binary messages.
    Ws(Box<WebSocketStream<TcpStream>>),
}

/// A hand-driven SPDY client.
pub struct Client {
    tcp: Transport,
    buf: Vec<u8>,
    enc: HeaderEncoder,
    dec: HeaderDecoder,
    next_id: u32,
    /// The window the server gives each new stream (its SETTINGS, else the
    /// SPDY/3 default).
    pub peer_window: u32,
    /// Take a reset of the stream [`Client::collect`] waits for, after data
    /// came on it, as its end: Go's SPDY server (containerd's) resets the
    /// streams the client left open when it closes the connection after
    /// the status. hull's tests keep this off: hull ends them with FIN.
    pub reset_ends: bool,
}

impl Client {
    pub async fn connect(url: &str, protocol: &str) -> Client {
        Client::connect_on(dial(url, None).await, url, protocol).await
    }

    /// Upgrade to SPDY on a connection made by [`dial`] (TLS, say).
    pub async fn connect_on(io: BoxIo, url: &str, protocol: &str) -> Client {
        let (code, headers, tcp, buf) = upgrade_on(io, url, &[("X-Stream-Protocol-Version", protocol)]).await;
        assert_eq!(code, 101, "{headers:?}");
        assert_eq!(headers.get("x-stream-protocol-version").map(String::as_str), Some(protocol));
        Client {
            tcp: Transport::Bytes(tcp),
            buf,
            enc: HeaderEncoder::new(),
            dec: HeaderDecoder::new(),
            next_id: 1,
            peer_window: 65536,
            reset_ends: false,
        }
    }

    /// SPDY tunnelled in an upgraded WebSocket (no HTTP upgrade inside:
    /// the first bytes are SPDY frames, as kubectl's tunnelling dialer).
    pub fn tunnel(ws: WebSocketStream<TcpStream>) -> Client {
        Client {
            tcp: Transport::Ws(Box::new(ws)),
            buf: Vec::new(),
            enc: HeaderEncoder::new(),
            dec: HeaderDecoder::new(),
            next_id: 1,
            peer_window: 65536,
            reset_ends: false,
        }
    }

    pub async fn send(&mut self, f: Frame) {
        let mut b = Vec::new();
        frame::encode(&f, &mut b).unwrap();
        // Window updates may race with the server closing after the last
        // frame, as with any client; everything else must go through.
        let r = match &mut self.tcp {
            Transport::Bytes(io) => io.write_all(&b).await,
            Transport::Ws(ws) => ws.send(Message::binary(b)).await.map_err(std::io::Error::other),
        };
        if !matches!(f, Frame::WindowUpdate { .. }) {
            r.unwrap();
        }
    }

    /// Bytes from the server; `None` when it closed.
    async fn read_more(&mut self) -> Option<Vec<u8>> {
        match &mut self.tcp {
            Transport::Bytes(io) => {
                let mut chunk = vec![0u8; 64 * 1024];
                let n = tokio::time::timeout(T, io.read(&mut chunk)).await.expect("server silent").ok()?;
                chunk.truncate(n);
                (n > 0).then_some(chunk)
            }
            Transport::Ws(ws) => loop {
                match tokio::time::timeout(T, ws.next()).await.expect("server silent")? {
                    Ok(Message::Binary(b)) => return Some(b.to_vec()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(Message::Text(t)) => panic!("a text message in a SPDY tunnel: {t}"),
                    Ok(_) => {}
                }
            },
        }
    }

    pub async fn open(&mut self, pairs: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.push(k, *v);
        }
        let headers = self.enc.encode(&h).unwrap();
        self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin: false, unidirectional: false, headers })
            .await;
        id
    }

    /// The next frame (SYN_REPLY header blocks are decoded to keep the
    /// zlib stream in step); `None` when the server closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf, frame::MAX_LENGTH).unwrap() {
                self.buf.drain(..n);
                if let Frame::SynReply { headers, .. } = &f {
                    self.dec.decode(headers).unwrap();
                }
                if let Frame::Settings { entries, .. } = &f {
                    if let Some(e) = entries.iter().find(|e| e.id == frame::setting::INITIAL_WINDOW_SIZE) {
                        self.peer_window = e.value;
                    }
                }
                return Some(f);
            }
            let more = self.read_more().await?;
            self.buf.extend_from_slice(&more);
        }
    }

    /// Collect data per stream until `until` is finished (FIN) by the
    /// server, giving window back as data arrives.
    pub async fn collect(&mut self, until: u32) -> HashMap<u32, Vec<u8>> {
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        loop {
            match self.next().await {
                None => panic!("connection closed before stream {until} finished; got {got:?}"),
                Some(Frame::Data { stream_id, fin, data }) => {
                    if !data.is_empty() {
                        let n = data.len() as u32;
                        self.send(Frame::WindowUpdate { stream_id, delta: n }).await;
                        self.send(Frame::WindowUpdate { stream_id: 0, delta: n }).await;
                    }
                    got.entry(stream_id).or_default().extend_from_slice(&data);
                    if fin && stream_id == until {
                        return got;
                    }
                }
                Some(Frame::RstStream { stream_id, .. }) if self.reset_ends && stream_id == until && got.contains_key(&until) => {
                    return got;
                }
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(_) => {}
            }
        }
    }
}

impl Client {
    /// Data of `stream` until it holds `want`; panics if the server closes
    /// first or resets a stream.
    pub async fn read_until(&mut self, stream: u32, want: &str) -> String {
        let mut out = Vec::new();
        while !String::from_utf8_lossy(&out).contains(want) {
            match self.next().await {
                Some(Frame::Data { stream_id, data, .. }) if stream_id == stream => out.extend_from_slice(&data),
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(_) => {}
                None => panic!("closed; got {:?}", String::from_utf8_lossy(&out)),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

pub fn status_json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(b)))
}
