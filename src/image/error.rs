//! Errors of the image service: each names the reference or path and what
//! failed, so `hull image` can print one clear line.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {why}")]
    InvalidReference { reference: String, why: String },
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    /// A layer entry that would land outside its snapshot, or that hull
    /// cannot represent safely.
    #[error("layer {layer}: refused entry {entry:?}: {why}")]
    HostileLayer { layer: String, entry: String, why: String },
    #[error("{reference}: {what}")]
    Registry { reference: String, what: String },
    #[error("{reference}: unauthorized: {what}")]
    Unauthorized { reference: String, what: String },
    #[error("{reference}: no manifest for platform {platform}")]
    NoPlatform { reference: String, platform: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A removal of an image something still uses.
    #[error("{0}")]
    InUse(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Resolving a path inside a snapshot or rootfs (see linux::safe_path).
    #[error("{path}: {source}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: Box<crate::Error>,
    },
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        ImageError::Io { what: what.into(), source: source.into() }
    }
    pub fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json { what: what.into(), source }
    }
}

/// Attach a description to a failing io or syscall.
pub trait IoContext<T> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| ImageError::io(what(), e))
    }
}

impl<T> IoContext<T> for std::result::Result<T, nix::Error> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|e| ImageError::io(what(), std::io::Error::from(e)))
    }
}
