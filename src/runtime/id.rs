//! Sandbox and container ids: 32 random bytes from the kernel, written as
//! 64 lowercase hex digits (containerd's form). Names are not ids: a name
//! is looked up in the name index ([`super::names`]) to find the id.
use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::error::{ErrorKind, RuntimeError};

/// Length of an id in hex digits.
pub const ID_LEN: usize = 64;

fn random_hex() -> Result<String, RuntimeError> {
    let mut b = [0u8; ID_LEN / 2];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| RuntimeError::new(ErrorKind::Internal, format!("read /dev/urandom for a new id: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn check_hex(what: &str, s: &str) -> Result<(), RuntimeError> {
    if s.len() == ID_LEN && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        let shown: String = s.chars().take(80).collect();
        Err(RuntimeError::new(ErrorKind::InvalidArgument, format!("{what} id {shown:?} is not {ID_LEN} lowercase hex digits")))
    }
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, ": 64 lowercase hex digits.")]
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A new random id.
            pub fn generate() -> Result<$name, RuntimeError> {
                random_hex().map($name)
            }

            /// Check and wrap an id given by a caller (a CRI request).
            pub fn parse(s: &str) -> Result<$name, RuntimeError> {
                check_hex($what, s)?;
                Ok($name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The first 12 digits, for display and for names with a
            /// length limit (cgroup leaves, interface names).
            pub fn short(&self) -> &str {
                &self.0[..12]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = RuntimeError;
            fn from_str(s: &str) -> Result<$name, RuntimeError> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = RuntimeError;
            fn try_from(s: String) -> Result<$name, RuntimeError> {
                check_hex($what, &s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(SandboxId, "sandbox");
id_type!(ContainerId, "container");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_64_hex_and_distinct() {
        let a = SandboxId::generate().unwrap();
        let b = SandboxId::generate().unwrap();
        assert_eq!(a.as_str().len(), 64);
        assert_ne!(a, b);
        assert_eq!(SandboxId::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.short().len(), 12);
    }

    #[test]
    fn bad_ids_are_invalid_arguments() {
        for bad in ["", "abc", &"A".repeat(64), &"g".repeat(64), &"0".repeat(65), "../../etc/passwd"] {
            let e = ContainerId::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(e.to_string().contains("container id"), "{e}");
        }
        assert!(serde_json::from_str::<SandboxId>("\"zz\"").is_err());
    }
}
