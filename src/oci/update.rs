//! `update`: change a running container's resource limits, and keep the
//! new values in its record.
use oci_spec::runtime::LinuxResources;
use serde_json::Value;

use super::state::{StateRoot, Status};
use crate::error::{Error, Result};

/// Apply the fields set in `patch` to the container's cgroup, then merge
/// them into the config kept in its state record.
pub fn update(root: &StateRoot, id: &str, patch: &LinuxResources) -> Result<()> {
    let mut rec = root.load(id)?;
    if rec.status(root) == Status::Stopped {
        return Err(Error::InvalidState(format!("container {id} is not running")));
    }
    if patch.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(Error::unsupported("linux.resources.devices", "device rules cannot be changed by update"));
    }
    crate::cgroups::check_supported(patch)?;
    let cg = rec.cgroup.as_ref().ok_or_else(|| Error::Cgroup("container has no cgroup".into()))?;
    cg.apply_resources(patch)?;

    let mut spec = serde_json::to_value(&rec.config).map_err(|e| Error::InvalidState(e.to_string()))?;
    let patch = serde_json::to_value(patch).map_err(|e| Error::InvalidState(e.to_string()))?;
    let linux = spec
        .as_object_mut()
        .ok_or_else(|| Error::InvalidState("stored config is not an object".into()))?
        .entry("linux")
        .or_insert_with(|| Value::Object(Default::default()));
    let resources = linux
        .as_object_mut()
        .ok_or_else(|| Error::InvalidState("stored config: linux is not an object".into()))?
        .entry("resources")
        .or_insert_with(|| Value::Object(Default::default()));
    merge(resources, patch);
    rec.config = serde_json::from_value(spec).map_err(|e| Error::InvalidState(format!("merged config: {e}")))?;
    root.save(&rec)
}

/// Deep merge of JSON objects: `patch`'s values win, objects merge.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

/// A byte size as runc's flags take it: a number with an optional binary
/// suffix (k, m, g, t; "KiB", "MB" and "b" forms too), or -1.
pub fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let digits_end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let num: f64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: i64 = match unit.trim().to_ascii_lowercase().trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit")),
    };
    Ok((num * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("128m"), Ok(128 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn merge_keeps_unpatched_fields() {
        let mut base = serde_json::json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        merge(&mut base, serde_json::json!({"memory": {"limit": 3}}));
        assert_eq!(base, serde_json::json!({"memory": {"limit": 3, "swap": 2}, "pids": {"limit": 5}}));
    }
}
