//! `hull daemon`: the CRI server's process. It binds the unix socket (mode
//! 0600, or 0660 with a group), refuses to start while another daemon holds
//! the socket's lock file, serves the RuntimeService and ImageService with
//! tonic on a tokio runtime, and on SIGTERM/SIGINT stops accepting, lets the
//! RPCs in flight finish (bounded) and exits 0. Containers are not the
//! daemon's children (monitors own them), so they keep running.
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use nix::fcntl::{Flock, FlockArg};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use super::config::DaemonConfig;
use super::image::Images;
use super::service::Cri;

/// The kubelet's gRPC message size limit (16 MiB), for requests; replies
/// (ExecSync output) may be larger.
const MAX_REQUEST: usize = 16 << 20;
const MAX_REPLY: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    #[error("another hull daemon is serving {socket} (pid {pid}, lock {lock}); stop it first")]
    AlreadyRunning { socket: PathBuf, lock: PathBuf, pid: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> DaemonError {
    DaemonError::Io { what: what.into(), source: source.into() }
}

/// Install the tracing subscriber: level and format from the config, to
/// `log_file` or stderr. The library's `log` records are forwarded to it.
/// The level is hull's own; the crates under it (h2, hyper, tonic) log at
/// most warnings, or their frame-by-frame debug lines would drown hull's.
pub fn init_logging(cfg: &DaemonConfig, log_file: Option<&Path>) -> Result<(), DaemonError> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level: LevelFilter = cfg.log_level.parse().map_err(|_| DaemonError::Setup(format!("log_level {:?}", cfg.log_level)))?;
    let filter = Targets::new().with_target("hull", level).with_default(std::cmp::min(level, LevelFilter::WARN));
    let writer: Box<dyn Fn() -> Box<dyn Write> + Send + Sync> = match log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| io(format!("open {}", p.display()), e))?;
            let f = Arc::new(f);
            Box::new(move || Box::new(SharedFile(f.clone())) as Box<dyn Write>)
        }
        None => Box::new(|| Box::new(std::io::stderr()) as Box<dyn Write>),
    };
    let ansi = log_file.is_none() && nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_writer(writer);
    let layer = if cfg.log_format == "json" {
        layer.json().with_current_span(true).with_span_list(false).boxed()
    } else {
        layer.with_ansi(ansi).boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|e| DaemonError::Setup(format!("install the logger: {e}")))
}

/// Appends through a shared file (each event is one write).
struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The socket's lock file, held for the daemon's life. The lock (not the
/// socket file, which a SIGKILLed daemon leaves behind) says whether a
/// daemon serves the socket.
fn lock_socket(socket: &Path) -> Result<Flock<File>, DaemonError> {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let f = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(format!("open {}", path.display()), e))?;
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
    let mut lock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((mut f, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim().chars().take(20).collect::<String>();
            return Err(DaemonError::AlreadyRunning {
                socket: socket.to_path_buf(),
                lock: path,
                pid: if pid.is_empty() { "unknown".into() } else { pid },
            });
        }
        Err((_, e)) => return Err(io(format!("lock {}", path.display()), e)),
    };
    lock.set_len(0).map_err(|e| io(format!("truncate {}", path.display()), e))?;
    lock.rewind().map_err(|e| io(format!("write {}", path.display()), e))?;
    writeln!(lock, "{}", std::process::id()).map_err(|e| io(format!("write {}", path.display()), e))?;
    Ok(lock)
}

/// The group `--socket-group` names (a name or a number).
fn socket_gid(group: &str) -> Result<nix::unistd::Gid, DaemonError> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(DaemonError::Setup(format!("socket_group: no group named {group:?}"))),
        Err(e) => Err(io(format!("look up group {group:?}"), e)),
    }
}

/// Bind the socket with no moment at which others could connect: made
/// under umask 0177 (this runs before any thread exists, so the
/// process-wide umask change races with nothing), then given its mode and
/// group.
fn bind_socket(cfg: &DaemonConfig) -> Result<std::os::unix::net::UnixListener, DaemonError> {
    let socket = &cfg.socket;
    let gid = cfg.socket_group.as_deref().map(socket_gid).transpose()?;
    if let Some(dir) = socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|e| io(format!("create {}", dir.display()), e))?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            // Left by a daemon that was killed: the lock is ours, so no one serves it.
            std::fs::remove_file(socket).map_err(|e| io(format!("remove stale {}", socket.display()), e))?;
        }
        Ok(_) => return Err(DaemonError::Setup(format!("{} exists and is not a socket; not replacing it", socket.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("stat {}", socket.display()), e)),
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(|e| io(format!("bind {}", socket.display()), e))?;
    let mode = if let Some(gid) = gid {
        nix::unistd::chown(socket, None, Some(gid)).map_err(|e| io(format!("chown {}", socket.display()), e))?;
        0o660
    } else {
        0o600
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode)).map_err(|e| io(format!("chmod {}", socket.display()), e))?;
    listener.set_nonblocking(true).map_err(|e| io("set the socket non-blocking", e))?;
    Ok(listener)
}

use std::os::unix::fs::DirBuilderExt;

/// Run the daemon until SIGTERM or SIGINT. Logging must be initialised.
pub fn run(cfg: DaemonConfig) -> Result<(), DaemonError> {
    // Before the socket: bad TLS files or a bad template leave nothing behind.
    let tls = match (&cfg.stream_tls_cert, &cfg.stream_tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::stream::tls::server_config(cert, key)
                .map_err(|e| DaemonError::Setup(format!("stream_tls_cert, stream_tls_key: {e}")))?,
        ),
        _ => None,
    };
    if let Some(t) = &cfg.cni_conf_template {
        super::cni_template::Template::load(t).map_err(|e| DaemonError::Setup(format!("cni_conf_template: {e}")))?;
    }
    // A SIGTERM from here on, before tokio's handlers are in place, still
    // stops the daemon cleanly (socket removed) rather than killing it.
    crate::linux::syscall::note_stop_signals().map_err(|e| DaemonError::Setup(e.to_string()))?;
    let _lock = lock_socket(&cfg.socket)?;
    let listener = bind_socket(&cfg)?;
    let result = serve(cfg.clone(), listener, tls);
    // The socket goes with the daemon (the lock file stays: removing a
    // file others may be about to lock would let two daemons run).
    let _ = std::fs::remove_file(&cfg.socket);
    result
}

fn serve(cfg: DaemonConfig, listener: std::os::unix::net::UnixListener, tls: Option<Arc<rustls::ServerConfig>>) -> Result<(), DaemonError> {
    let images = Images::open(&cfg).map_err(|e| DaemonError::Setup(format!("image store {}: {e}", cfg.image_root().display())))?;
    let runtime = super::service::open_runtime(&cfg).map_err(|e| DaemonError::Setup(format!("runtime: {}", super::errors::message(&e))))?;
    let runtime = Arc::new(runtime);
    let last = runtime.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hull-cri")
        .build()
        .map_err(|e| io("start the tokio runtime", e))?;
    let grace = Duration::from_secs(cfg.shutdown_timeout_seconds);
    let socket = cfg.socket.clone();
    let done = rt.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| io("register the socket", e))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| io("SIGTERM handler", e))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(|e| io("SIGINT handler", e))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stream_cfg = crate::stream::server::Config::new(cfg.run_dir.join("streams"));
        stream_cfg.addr = cfg.stream_addr();
        stream_cfg.tls = tls;
        let streams = crate::stream::server::Server::start(stream_cfg)
            .await
            .map_err(|e| io(format!("start the streaming server on {}", cfg.stream_addr()), e))?;
        tracing::info!(url = streams.base_url(), "streaming server");
        let cri = Cri::new(runtime.clone(), Arc::new(images), Arc::new(cfg), stop_rx.clone(), streams);
        let mut stop = stop_rx;
        let server = tonic::transport::Server::builder()
            .add_service(
                RuntimeServiceServer::new(cri.clone())
                    .max_decoding_message_size(MAX_REQUEST)
                    .max_encoding_message_size(MAX_REPLY),
            )
            .add_service(
                ImageServiceServer::new(cri)
                    .max_decoding_message_size(MAX_REQUEST)
                    .max_encoding_message_size(MAX_REPLY),
            )
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = stop.wait_for(|s| *s).await;
            });
        let mut server = tokio::spawn(server);
        info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "serving CRI v1");
        // tokio's handlers chain to the noting one, so a signal seen before
        // they were registered is in `noted`, and one after in both.
        let noted =
            crate::linux::syscall::noted_stop_signal().map(|s| if s == nix::sys::signal::Signal::SIGINT { "SIGINT" } else { "SIGTERM" });
        let signal = if let Some(noted) = noted {
            noted
        } else {
            tokio::select! {
                r = &mut server => {
                    return match r {
                        Ok(Ok(())) => Err(DaemonError::Setup("the server stopped on its own".into())),
                        Ok(Err(e)) => Err(DaemonError::Setup(format!("serve: {e}"))),
                        Err(e) => Err(DaemonError::Setup(format!("serve: {e}"))),
                    };
                }
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        };
        info!(signal, grace_seconds = grace.as_secs(), "stopping: no new connections, waiting for RPCs in flight; containers keep running");
        let _ = stop_tx.send(true);
        match tokio::time::timeout(grace, &mut server).await {
            Ok(_) => info!("stopped"),
            Err(_) => warn!("RPCs still in flight after {}s; exiting without them", grace.as_secs()),
        }
        Ok(())
    });
    // Blocking work still running (a slow CNI plugin, a pull) is abandoned
    // here: the runtime layer's records make that the same as a crash.
    rt.shutdown_timeout(Duration::from_millis(500));
    // Containers created and not started yet stay created.
    last.settle_launches();
    done
}
