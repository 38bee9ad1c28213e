//! The streaming server: the HTTP/1.1 endpoint whose URLs the CRI `Exec`,
//! `Attach` and `PortForward` RPCs return. A URL carries a random token,
//! single-use and short-lived, bound to the request it was issued for; the
//! client upgrades the connection at it to SPDY/3.1 or WebSocket.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::exec::ExecTarget;
use super::portforward::PortForwardTarget;
use super::protocol::{self, PROTOCOL_HEADER};
use super::session::AttachTarget;
use super::spdy::conn::Connection;
use super::spdy::session::Limits;

/// Settings of the streaming server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (containerd's default: 127.0.0.1 and any port).
    pub addr: SocketAddr,
    /// How long an issued URL stays valid.
    pub token_ttl: Duration,
    /// A connection with no traffic for this long is closed (the
    /// kubelet's default: 4 hours).
    pub idle_timeout: Duration,
    /// Streams one connection may have open at once.
    pub max_streams: u32,
    /// Private directory for per-session files (console sockets).
    pub work_dir: PathBuf,
    /// Serve TLS with this config (URLs are then `https://`); None: plain
    /// HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Config {
    pub fn new(work_dir: PathBuf) -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_ttl: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(4 * 3600),
            max_streams: 100,
            work_dir,
            tls: None,
        }
    }
}

/// What a URL was issued for.
#[derive(Debug, Clone)]
pub enum Target {
    Exec(ExecTarget),
    Attach(AttachTarget),
    PortForward(PortForwardTarget),
}

impl Target {
    fn path(&self) -> &'static str {
        match self {
            Target::Exec(_) => "exec",
            Target::Attach(_) => "attach",
            Target::PortForward(_) => "portforward",
        }
    }
}

struct Issued {
    target: Target,
    expires: Instant,
}

struct State {
    config: Config,
    tokens: Mutex<HashMap<String, Issued>>,
    base: String,
    sessions: AtomicU64,
}

/// A running streaming server.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

impl Server {
    /// Bind and start serving on the current tokio runtime.
    pub async fn start(config: Config) -> std::io::Result<Server> {
        std::fs::create_dir_all(&config.work_dir)?;
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let state =
            Arc::new(State { base: format!("{scheme}://{addr}"), config, tokens: Mutex::new(HashMap::new()), sessions: AtomicU64::new(0) });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of fds or memory: wait a little for some to be
                        // freed rather than spin on the failing accept.
                        tracing::warn!("stream server: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // Small frames (WINDOW_UPDATE, a terminal's keystrokes) go
                // out at once, not held back by Nagle's algorithm waiting
                // for the peer's delayed ACK (Go's servers and clients, the
                // kubelet's and crictl's, turn it off too).
                let _ = tcp.set_nodelay(true);
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_connection(st, tcp).await,
                        // The handshake runs in the connection's own task,
                        // bounded, so a silent client holds up nobody.
                        Some(acceptor) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => serve_connection(st, tls).await,
                            Ok(Err(e)) => log::debug!("streaming connection: TLS handshake: {e}"),
                            Err(_) => log::debug!("streaming connection: no TLS handshake in {TLS_HANDSHAKE_TIMEOUT:?}"),
                        },
                    }
                });
            }
        });
        Ok(Server { state })
    }

    /// The address it listens on.
    pub fn base_url(&self) -> &str {
        &self.state.base
    }

    /// A single-use URL for `target`.
    pub fn issue(&self, target: Target) -> std::io::Result<String> {
        let token = new_token()?;
        let path = target.path();
        let mut tokens = self.state.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(token.clone(), Issued { target, expires: now + self.state.config.token_ttl });
        Ok(format!("{}/{path}/{token}", self.state.base))
    }
}

/// How long a client has to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve HTTP/1.1 (with upgrades) on one accepted connection.
async fn serve_connection<I>(st: Arc<State>, io: I)
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let _ = conn.with_upgrades().await;
}

/// 128 random bits: a URL nobody can guess, or no URL.
fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

type Resp = Response<Full<Bytes>>;
/// A refusal, boxed: responses are large and refusals are the rare path.
type Refusal = Box<Resp>;

fn reply(code: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = code;
    r
}

fn refuse(code: StatusCode, msg: &str) -> Refusal {
    Box::new(reply(code, msg))
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Resp, std::convert::Infallible> {
    Ok(route(st, req).unwrap_or_else(|r| *r))
}

fn route(st: Arc<State>, mut req: Request<Incoming>) -> Result<Resp, Refusal> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let (kind, token) = path.split_once('/').ok_or_else(|| refuse(StatusCode::NOT_FOUND, "not found"))?;
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/') {
        return Err(refuse(StatusCode::NOT_FOUND, "not found"));
    }
    // The token is used up by this lookup, whatever follows: it is single-use.
    let target = {
        let mut tokens = st.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(token) {
            Some(t) if t.target.path() == kind => tokens.remove(token),
            _ => None,
        }
    }
    .filter(|t| t.expires > Instant::now())
    .map(|t| t.target)
    .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "unknown or expired token"))?;
    let upgrade = header_str(req.headers(), UPGRADE.as_str()).to_ascii_lowercase();
    let query_ports = query_ports(req.uri().query().unwrap_or(""));
    if upgrade == "spdy/3.1" {
        let ours = match target {
            Target::Exec(_) | Target::Attach(_) => protocol::SPDY_REMOTECOMMAND,
            Target::PortForward(_) => protocol::SPDY_PORTFORWARD,
        };
        let offered: Vec<String> = req
            .headers()
            .get_all(PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect();
        let chosen = protocol::negotiate(&offered, ours).ok_or_else(|| {
            refuse(
                StatusCode::FORBIDDEN,
                &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {ours:?}"),
            )
        })?;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let idle_timeout = st.config.idle_timeout;
        spawn_session(async move {
            let Ok(up) = on_upgrade.await else { return };
            let (io, clock) = IdleIo::new(TokioIo::new(up));
            let limits = Limits { max_concurrent_streams: st.config.max_streams, ..Limits::default() };
            let conn = Connection::serve(io, limits);
            let handle = conn.handle();
            let session = async move {
                match target {
                    Target::Exec(t) => super::spdy_front::exec(conn, protocol::remotecommand_version(chosen), t, session_dir(&st)).await,
                    Target::Attach(t) => super::spdy_front::attach(conn, protocol::remotecommand_version(chosen), t).await,
                    Target::PortForward(p) => super::spdy_front::port_forward(conn, p.netns).await,
                }
            };
            with_idle(clock, idle_timeout, session).await;
            handle.shutdown();
        });
        let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
        *r.body_mut() = Full::new(Bytes::new());
        let h = r.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static(chosen));
        return Ok(r);
    }
    if upgrade == "websocket" {
        return websocket(st, req, target, query_ports);
    }
    Err(refuse(StatusCode::BAD_REQUEST, "this endpoint needs a connection upgrade to SPDY/3.1 or websocket"))
}

fn websocket(st: Arc<State>, mut req: Request<Incoming>, target: Target, query_ports: Vec<u16>) -> Result<Resp, Refusal> {
    let key = header_str(req.headers(), "sec-websocket-key");
    if key.is_empty() || header_str(req.headers(), "sec-websocket-version") != "13" {
        return Err(refuse(StatusCode::BAD_REQUEST, "websocket upgrade needs Sec-WebSocket-Key and version 13"));
    }
    let ours = match target {
        Target::Exec(_) | Target::Attach(_) => protocol::WS_REMOTECOMMAND,
        Target::PortForward(_) => protocol::WS_PORTFORWARD,
    };
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let chosen = protocol::negotiate(&offered, ours).ok_or_else(|| {
        refuse(StatusCode::FORBIDDEN, &format!("unable to upgrade: client supports {offered:?}, server supports {ours:?}"))
    })?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let idle_timeout = st.config.idle_timeout;
    spawn_session(async move {
        let Ok(up) = on_upgrade.await else { return };
        let (io, clock) = IdleIo::new(TokioIo::new(up));
        let ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, tokio_tungstenite::tungstenite::protocol::Role::Server, None).await;
        let session = async move {
            match target {
                Target::Exec(t) => super::ws_front::exec(ws, protocol::remotecommand_version(chosen), t, session_dir(&st)).await,
                Target::Attach(t) => super::ws_front::attach(ws, protocol::remotecommand_version(chosen), t).await,
                Target::PortForward(p) if chosen == protocol::TUNNEL_PORTFORWARD => {
                    let limits = Limits { max_concurrent_streams: st.config.max_streams, ..Limits::default() };
                    let conn = Connection::serve(super::ws_front::tunnel(ws), limits);
                    super::spdy_front::port_forward(conn, p.netns).await
                }
                Target::PortForward(p) => {
                    let ports = if query_ports.is_empty() { p.ports } else { query_ports };
                    super::ws_front::port_forward(ws, ports, p.netns).await
                }
            }
        };
        with_idle(clock, idle_timeout, session).await;
    });
    let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, "");
    *r.body_mut() = Full::new(Bytes::new());
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert("sec-websocket-protocol", HeaderValue::from_static(chosen));
    h.insert("sec-websocket-accept", HeaderValue::from_str(&accept).map_err(|_| refuse(StatusCode::INTERNAL_SERVER_ERROR, "accept key"))?);
    Ok(r)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim()
}

/// `port=80&port=443` (or `ports=80,443`) as WebSocket port-forward names them.
fn query_ports(q: &str) -> Vec<u16> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "port" || *k == "ports")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|p| p.parse().ok())
        .filter(|p| *p != 0)
        .take(64)
        .collect()
}

/// A fresh per-session directory under the work dir.
fn session_dir(st: &State) -> PathBuf {
    let n = st.sessions.fetch_add(1, Ordering::Relaxed);
    st.config.work_dir.join(format!("s{n}"))
}

fn spawn_session<F>(session: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(session);
}

/// Run `f` until it ends or its connection saw no traffic for `idle`;
/// dropping `f` then closes the streams and kills the session's process.
async fn with_idle<F: std::future::Future<Output = ()>>(clock: IdleClock, idle: Duration, f: F) {
    tokio::pin!(f);
    loop {
        let quiet = clock.quiet_for();
        if quiet >= idle {
            log::debug!("streaming connection idle for {quiet:?}: closed");
            return;
        }
        tokio::select! {
            _ = &mut f => return,
            _ = tokio::time::sleep(idle - quiet) => {}
        }
    }
}

/// When an [`IdleIo`] last moved bytes.
#[derive(Clone)]
pub struct IdleClock {
    last: Arc<AtomicU64>,
    start: Instant,
}

impl IdleClock {
    fn quiet_for(&self) -> Duration {
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// Counts traffic so a watchdog can tell an idle connection.
pub struct IdleIo<T> {
    inner: T,
    clock: IdleClock,
}

impl<T> IdleIo<T> {
    pub fn new(inner: T) -> (Self, IdleClock) {
        let clock = IdleClock { last: Arc::new(AtomicU64::new(0)), start: Instant::now() };
        (IdleIo { inner, clock: clock.clone() }, clock)
    }
    fn touch(&self) {
        self.clock.last.store(self.clock.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_the_query() {
        assert_eq!(query_ports("port=80&port=443"), [80, 443]);
        assert_eq!(query_ports("ports=80,8080&x=1"), [80, 8080]);
        assert_eq!(query_ports("port=0&port=99999&port=a"), Vec::<u16>::new());
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
