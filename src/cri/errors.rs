//! The one place hull's errors become gRPC statuses: through the runtime
//! layer's kind → code mapping ([`crate::runtime::grpc_code`]), with the
//! message and its causes in the status message.
use tonic::{Code, Status};

use crate::runtime::{ErrorKind, RuntimeError};

/// The error's message followed by the causes it does not already say.
pub use crate::error::chain as message;

pub fn status(e: RuntimeError) -> Status {
    Status::new(Code::from_i32(e.grpc_code().as_i32()), message(&e))
}

/// An error of a lower layer (image store, network...), by its kind.
pub fn from_crate(e: impl Into<crate::Error>) -> Status {
    status(RuntimeError::from(e.into()))
}

/// A malformed request: InvalidArgument naming the field.
pub fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    status(RuntimeError::invalid(format!("{field}: {why}")))
}

pub fn not_found(what: impl Into<String>) -> Status {
    status(RuntimeError::not_found(what))
}

pub fn precondition(what: impl Into<String>) -> Status {
    status(RuntimeError::precondition(what))
}

/// An RPC hull does not have (yet); the message says what instead.
pub fn unimplemented(what: impl Into<String>) -> Status {
    status(RuntimeError::new(ErrorKind::Unimplemented, what))
}

pub fn internal(what: impl Into<String>) -> Status {
    status(RuntimeError::internal(what))
}

/// For the idempotent stop and remove RPCs: an id that names nothing is
/// None (done already), other errors stay.
pub fn gone_is_ok<T>(r: Result<T, Status>) -> Result<Option<T>, Status> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s),
    }
}

/// For the idempotent stop and remove RPCs: a NotFound is success.
pub fn ignore_not_found(r: Result<(), RuntimeError>) -> Result<(), Status> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other.map_err(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_codes() {
        assert_eq!(status(RuntimeError::not_found("x")).code(), Code::NotFound);
        assert_eq!(status(RuntimeError::new(ErrorKind::DeadlineExceeded, "t")).code(), Code::DeadlineExceeded);
        let s = invalid("metadata.name", "empty");
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, "metadata.name: empty"));
        assert_eq!(from_crate(crate::Error::NotFound("c".into())).code(), Code::NotFound);
        assert!(ignore_not_found(Err(RuntimeError::not_found("gone"))).is_ok());
        assert_eq!(ignore_not_found(Err(RuntimeError::internal("boom"))).unwrap_err().code(), Code::Internal);
    }
}
