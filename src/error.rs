//! The crate's error type: one variant family per concern, with the
//! underlying OS error kept as the source.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json could not be read or parsed, or asks for something invalid.
    #[error("config.json: {0}")]
    Config(String),
    /// A field the config sets that hull does not implement (yet).
    #[error("config.json: {field} is not supported: {why}")]
    Unsupported { field: String, why: String },
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// The container is in a state the operation does not allow.
    #[error("{0}")]
    InvalidState(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A syscall or file operation failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The container's init (or an exec'd process) reported a failure.
    #[error("{0}")]
    Init(String),
    #[error("hook {path:?} ({kind}): {message}")]
    Hook {
        kind: String,
        path: PathBuf,
        message: String,
    },
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// A linux.resources value that is invalid or that the kernel refused;
    /// `field` is its JSON path (e.g. "linux.resources.memory.limit").
    #[error("{field}: {message}")]
    Resource { field: String, message: String },
    /// A seccomp profile that is invalid or unsupported, or that the kernel
    /// refused.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error("image: {0}")]
    Image(#[from] crate::image::ImageError),
    /// An error of the sandbox and container services, with its kind.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

impl Error {
    /// A failed system call or file operation, with what was being attempted.
    pub fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            source: source.into(),
        }
    }

    pub fn resource(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Resource {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Unsupported {
            field: field.into(),
            why: why.into(),
        }
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::sys("system call", std::io::Error::from(e))
    }
}

/// An error's message followed by the causes it does not already say
/// (one line for the CLI and for gRPC statuses).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// Attach a description to a failing syscall or io operation.
pub trait SysContext<T> {
    fn sys_context<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> SysContext<T> for std::result::Result<T, nix::Error> {
    fn sys_context<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::sys(what(), std::io::Error::from(e)))
    }
}

impl<T> SysContext<T> for std::result::Result<T, std::io::Error> {
    fn sys_context<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| Error::sys(what(), e))
    }
}
