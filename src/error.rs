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
    Hook { kind: String, path: PathBuf, message: String },
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
        Error::Sys { what: what.into(), source: source.into() }
    }

    pub fn resource(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Resource { field: field.into(), message: message.into() }
    }

    pub fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Unsupported { field: field.into(), why: why.into() }
    }
}

/// The kind of an [`Error`], without its payload: what crosses a process
/// boundary (the init handshake) so the far side rebuilds the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    Config,
    Unsupported,
    NotFound,
    AlreadyExists,
    InvalidState,
    InvalidArgument,
    Sys,
    Init,
    Hook,
    Cgroup,
    Resource,
    /// Seccomp, network, image (and other families') errors: carried as
    /// their message.
    Other,
}

/// An error as sent over the init handshake: `{errno, kind, message}` (as
/// crun's sync socket carries them), plus the field or hook it names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteError {
    pub kind: ErrorKind,
    /// The OS error of a failed system call.
    pub errno: Option<i32>,
    /// The message; for a system call, what was being attempted.
    pub message: String,
    /// The config field (Unsupported, Resource) or hook kind (Hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidState(_) => ErrorKind::InvalidState,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Sys { .. } => ErrorKind::Sys,
            Error::Init(_) => ErrorKind::Init,
            Error::Hook { .. } => ErrorKind::Hook,
            Error::Cgroup(_) => ErrorKind::Cgroup,
            Error::Resource { .. } => ErrorKind::Resource,
            // Seccomp, network, image and any later families.
            _ => ErrorKind::Other,
        }
    }

    /// The OS error number of a failed system call, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The same error with `ctx` in front of its message, keeping its kind
    /// (and for a system call its errno).
    pub fn with_context(self, ctx: impl std::fmt::Display) -> Error {
        match self {
            Error::Sys { what, source } => Error::Sys { what: format!("{ctx}: {what}"), source },
            Error::Config(m) => Error::Config(format!("{ctx}: {m}")),
            Error::Init(m) => Error::Init(format!("{ctx}: {m}")),
            Error::Cgroup(m) => Error::Cgroup(format!("{ctx}: {m}")),
            Error::InvalidState(m) => Error::InvalidState(format!("{ctx}: {m}")),
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{ctx}: {m}")),
            e
            @ (Error::Unsupported { .. } | Error::Resource { .. } | Error::Hook { .. } | Error::NotFound(_) | Error::AlreadyExists(_)) => e,
            other => Error::Init(format!("{ctx}: {other}")),
        }
    }

    /// What to send over the handshake for this error.
    pub fn to_remote(&self) -> RemoteError {
        let plain = |message: String| RemoteError { kind: self.kind(), errno: None, message, field: None, path: None };
        match self {
            Error::Config(m) | Error::NotFound(m) | Error::AlreadyExists(m) | Error::InvalidState(m) => plain(m.clone()),
            Error::InvalidArgument(m) | Error::Init(m) | Error::Cgroup(m) => plain(m.clone()),
            Error::Unsupported { field, why } => RemoteError { field: Some(field.clone()), ..plain(why.clone()) },
            Error::Resource { field, message } => RemoteError { field: Some(field.clone()), ..plain(message.clone()) },
            Error::Hook { kind, path, message } => {
                RemoteError { field: Some(kind.clone()), path: Some(path.clone()), ..plain(message.clone()) }
            }
            Error::Sys { what, source } => match source.raw_os_error() {
                Some(errno) => RemoteError { errno: Some(errno), ..plain(what.clone()) },
                None => RemoteError { kind: ErrorKind::Init, ..plain(self.to_string()) },
            },
            _ => plain(self.to_string()),
        }
    }

    /// Rebuild an error received over the handshake.
    pub fn from_remote(r: RemoteError) -> Error {
        let field = r.field.unwrap_or_default();
        match (r.kind, r.errno) {
            (ErrorKind::Sys, Some(errno)) => Error::sys(r.message, std::io::Error::from_raw_os_error(errno)),
            (ErrorKind::Config, _) => Error::Config(r.message),
            (ErrorKind::Unsupported, _) => Error::Unsupported { field, why: r.message },
            (ErrorKind::NotFound, _) => Error::NotFound(r.message),
            (ErrorKind::AlreadyExists, _) => Error::AlreadyExists(r.message),
            (ErrorKind::InvalidState, _) => Error::InvalidState(r.message),
            (ErrorKind::InvalidArgument, _) => Error::InvalidArgument(r.message),
            (ErrorKind::Hook, _) => Error::Hook { kind: field, path: r.path.unwrap_or_default(), message: r.message },
            (ErrorKind::Cgroup, _) => Error::Cgroup(r.message),
            (ErrorKind::Resource, _) => Error::Resource { field, message: r.message },
            (ErrorKind::Sys | ErrorKind::Init | ErrorKind::Other, _) => Error::Init(r.message),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_kind_and_errno_across_the_handshake() {
        let cases = [
            Error::sys("mount proc", std::io::Error::from_raw_os_error(libc::ENOENT)),
            Error::sys("setns", std::io::Error::from_raw_os_error(libc::EPERM)),
            Error::sys("pivot_root", std::io::Error::from_raw_os_error(libc::EINVAL)),
            Error::Config("bind source /x does not exist".into()),
            Error::unsupported("linux.intelRdt", "no resctrl"),
            Error::Hook { kind: "createContainer".into(), path: "/bin/false".into(), message: "exit status: 1".into() },
        ];
        for e in cases {
            let text = e.to_string();
            let wire = serde_json::to_string(&e.to_remote()).unwrap();
            let back = Error::from_remote(serde_json::from_str(&wire).unwrap());
            assert_eq!(back.kind(), e.kind(), "{text}");
            assert_eq!(back.errno(), e.errno(), "{text}");
            assert_eq!(back.to_string(), text);
        }
        let e = Error::sys("mount", std::io::Error::from_raw_os_error(libc::ENOENT)).with_context("mounts[0] (/proc)");
        assert_eq!(e.errno(), Some(libc::ENOENT));
        assert!(e.to_string().starts_with("mounts[0] (/proc): mount: "), "{e}");
    }
}
