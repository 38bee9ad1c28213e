//! The runtime layer's errors: a kind the front ends act on (the CRI server
//! turns it into a gRPC code with [`grpc_code`], the CLI prints the message)
//! and a message that names the sandbox or container concerned.
use std::fmt;

/// What kind of failure, as a kubelet needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The sandbox or container (or a thing it names) does not exist.
    NotFound,
    /// The request itself is wrong: a bad field, an unsupported option.
    InvalidArgument,
    /// The name is taken (the message names the id that holds it).
    AlreadyExists,
    /// The object is in a state that does not allow the operation
    /// (start of a running container, a container in a stopped sandbox).
    FailedPrecondition,
    /// A time limit ran out (exec_sync, stop).
    DeadlineExceeded,
    /// A feature hull does not have (the message names the field).
    Unimplemented,
    /// Anything else: a syscall, a plugin, a corrupt record.
    Internal,
}

/// gRPC status codes with their standard numeric values (grpc/grpc
/// doc/statuscodes.md), so the runtime layer needs no gRPC crate. The CRI
/// server converts these into its library's code type by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

/// The one mapping from hull's error kinds to the gRPC codes the kubelet
/// acts on.
pub fn grpc_code(kind: ErrorKind) -> GrpcCode {
    match kind {
        ErrorKind::NotFound => GrpcCode::NotFound,
        ErrorKind::InvalidArgument => GrpcCode::InvalidArgument,
        ErrorKind::AlreadyExists => GrpcCode::AlreadyExists,
        ErrorKind::FailedPrecondition => GrpcCode::FailedPrecondition,
        ErrorKind::DeadlineExceeded => GrpcCode::DeadlineExceeded,
        ErrorKind::Unimplemented => GrpcCode::Unimplemented,
        ErrorKind::Internal => GrpcCode::Internal,
    }
}

/// An error of the runtime layer.
#[derive(Debug)]
pub struct RuntimeError {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

impl RuntimeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RuntimeError {
        RuntimeError { kind, message: message.into(), source: None }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> RuntimeError {
        RuntimeError { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    pub fn not_found(message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(ErrorKind::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(ErrorKind::InvalidArgument, message)
    }

    pub fn precondition(message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(ErrorKind::FailedPrecondition, message)
    }

    pub fn internal(message: impl Into<String>) -> RuntimeError {
        RuntimeError::new(ErrorKind::Internal, message)
    }

    /// A field of a config that hull does not implement.
    pub fn unimplemented(field: impl fmt::Display, why: impl fmt::Display) -> RuntimeError {
        RuntimeError::new(ErrorKind::Unimplemented, format!("{field} is not supported: {why}"))
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn grpc_code(&self) -> GrpcCode {
        grpc_code(self.kind)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Put what was being done in front of the message; the kind stays.
    pub fn context(mut self, what: impl fmt::Display) -> RuntimeError {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The kind of one of the lower layers' errors (OCI, linux, cgroups,
/// network, image): their message is kept, and the syscall error stays
/// reachable as the source.
pub fn kind_of(e: &crate::Error) -> ErrorKind {
    use crate::Error as E;
    match e {
        E::NotFound(_) => ErrorKind::NotFound,
        E::AlreadyExists(_) => ErrorKind::AlreadyExists,
        E::InvalidArgument(_) | E::Config(_) | E::Resource { .. } => ErrorKind::InvalidArgument,
        E::Unsupported { .. } => ErrorKind::Unimplemented,
        E::InvalidState(_) => ErrorKind::FailedPrecondition,
        E::Seccomp(crate::seccomp::SeccompError::Invalid { .. }) => ErrorKind::InvalidArgument,
        E::Network(crate::network::NetworkError::InvalidRequest(_)) => ErrorKind::InvalidArgument,
        E::Image(crate::image::ImageError::NotFound(_) | crate::image::ImageError::NoPlatform { .. }) => ErrorKind::NotFound,
        E::Image(crate::image::ImageError::InUse(_)) => ErrorKind::FailedPrecondition,
        E::Image(
            crate::image::ImageError::InvalidReference { .. }
            | crate::image::ImageError::InvalidDigest(_)
            | crate::image::ImageError::InvalidArgument(_),
        ) => ErrorKind::InvalidArgument,
        E::Image(crate::image::ImageError::Unsupported(_)) => ErrorKind::Unimplemented,
        E::Runtime(r) => r.kind,
        _ => ErrorKind::Internal,
    }
}

impl From<crate::Error> for RuntimeError {
    fn from(e: crate::Error) -> RuntimeError {
        if let crate::Error::Runtime(r) = e {
            return r;
        }
        let kind = kind_of(&e);
        RuntimeError { kind, message: e.to_string(), source: Some(Box::new(e)) }
    }
}

impl From<crate::network::NetworkError> for RuntimeError {
    fn from(e: crate::network::NetworkError) -> RuntimeError {
        RuntimeError::from(crate::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_grpc_code() {
        let cases = [
            (ErrorKind::NotFound, GrpcCode::NotFound, 5),
            (ErrorKind::InvalidArgument, GrpcCode::InvalidArgument, 3),
            (ErrorKind::AlreadyExists, GrpcCode::AlreadyExists, 6),
            (ErrorKind::FailedPrecondition, GrpcCode::FailedPrecondition, 9),
            (ErrorKind::DeadlineExceeded, GrpcCode::DeadlineExceeded, 4),
            (ErrorKind::Unimplemented, GrpcCode::Unimplemented, 12),
            (ErrorKind::Internal, GrpcCode::Internal, 13),
        ];
        for (kind, code, n) in cases {
            assert_eq!(grpc_code(kind), code, "{kind:?}");
            assert_eq!(code.as_i32(), n, "{kind:?}");
            assert_eq!(RuntimeError::new(kind, "x").grpc_code(), code);
        }
    }

    #[test]
    fn lower_layer_errors_keep_their_kind_and_source() {
        let e = RuntimeError::from(crate::Error::NotFound("x".into()));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = RuntimeError::from(crate::Error::unsupported("linux.foo", "no"));
        assert_eq!(e.kind(), ErrorKind::Unimplemented);
        let e = RuntimeError::from(crate::Error::sys("open x", std::io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(std::error::Error::source(&e).is_some());
        let e = RuntimeError::from(crate::Error::from(crate::image::ImageError::NotFound("busybox".into())));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = RuntimeError::from(crate::Error::from(crate::image::ImageError::InvalidArgument("x".into())));
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = RuntimeError::invalid("bad").context("sandbox default/a");
        assert_eq!((e.kind(), e.to_string().as_str()), (ErrorKind::InvalidArgument, "sandbox default/a: bad"));
    }
}
