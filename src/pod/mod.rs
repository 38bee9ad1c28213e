pub mod probe;
pub mod backoff;
