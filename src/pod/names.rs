//! Pod and container names as Kubernetes validates them: a pod name is a
//! DNS-1123 subdomain, a container name and a namespace are DNS-1123
//! labels. No `_` and no `/`: the names make directories and ids.
use crate::error::{Error, Result};

/// RFC 1123 label: 1-63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn check_label(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {:?} is not a valid name: a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)",
            s.chars().take(80).collect::<String>()
        )))
    }
}

/// RFC 1123 subdomain: labels joined by `.`, at most 253 bytes.
pub fn check_subdomain(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| check_label(what, l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what} {:?} is not a valid name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)",
            s.chars().take(80).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_name_rules() {
        for ok in ["a", "web-1", "a1b2"] {
            check_label("container name", ok).unwrap();
        }
        for bad in ["", "A", "a_b", "a/b", "-a", "a-", &"a".repeat(64), "a.b"] {
            let e = check_label("container name", bad).unwrap_err();
            assert!(e.to_string().contains("container name"), "{e}");
        }
        check_subdomain("pod name", "web.example-1").unwrap();
        for bad in ["a_b", "a..b", ".a", "A.b", "a/b"] {
            assert!(check_subdomain("pod name", bad).is_err(), "{bad}");
        }
    }
}
