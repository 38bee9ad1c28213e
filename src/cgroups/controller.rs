//! The interface every controller file implements, v1 and v2 alike, and the
//! file helpers they write and read through.
//!
//! Controllers only ever see a directory path: the container's directory in
//! the controller's hierarchy on a host, a temp directory in unit tests (the
//! seam that lets the v2 code be tested on this project's v1 machines).
use std::fmt::Display;
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::stats::Stats;
use crate::error::{Error, Result};

/// One cgroup controller: what it applies from `linux.resources` and what it
/// reports in the stats.
pub trait Controller {
    /// The controller's name: a v1 hierarchy member ("cpu", "memory") or a v2
    /// controller ("cpu", "io").
    const NAME: &'static str;
    /// The first `linux.resources` field this controller would apply, if the
    /// config sets any (used to name the field when the controller is absent).
    fn wanted(r: &LinuxResources) -> Option<&'static str>;
    /// Write the settings of `r` into the cgroup directory `dir`.
    fn apply(dir: &Path, r: &LinuxResources) -> Result<()>;
    /// Add what this controller reports to `stats`. Missing files are skipped.
    fn stats(_dir: &Path, _stats: &mut Stats) {}
}

/// Write one control file; a failure names the config field. The file is
/// never created: a missing file is a missing controller (or a kernel
/// without that feature) and an error.
pub fn write(dir: &Path, file: &str, value: impl Display, field: &str) -> Result<()> {
    use std::io::Write;
    let value = value.to_string();
    let path = dir.join(file);
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Error::resource(field, format!("write {value:?} to {}: {e}", path.display())))
}

/// A stand-in cgroup directory for unit tests: a temp dir with these
/// (empty) control files.
#[cfg(test)]
pub fn fake_cgroup(files: &[&str]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::write(t.path().join(f), "").unwrap();
    }
    t
}

/// The trimmed contents of a control file, None if it cannot be read.
pub fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

/// A single-number control file ("max" and unreadable files give None).
pub fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.parse().ok()
}

/// A flat keyed file ("key value" lines: memory.stat, cpu.stat, memory.events...).
pub fn read_keyed(dir: &Path, file: &str) -> Vec<(String, u64)> {
    read(dir, file).map(|text| parse_keyed(&text)).unwrap_or_default()
}

pub fn parse_keyed(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// The value of `key` in a flat keyed file.
pub fn keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    read_keyed(dir, file).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_error_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        let err = write(&t.path().join("missing"), "x", 1, "linux.resources.pids.limit").unwrap_err();
        assert!(err.to_string().starts_with("linux.resources.pids.limit: "), "{err}");
    }

    #[test]
    fn write_does_not_create_files() {
        let t = fake_cgroup(&["pids.max"]);
        write(t.path(), "pids.max", 5, "f").unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("pids.max")).unwrap(), "5");
        assert!(write(t.path(), "nope.max", 5, "f").is_err());
        assert!(!t.path().join("nope.max").exists());
    }

    #[test]
    fn keyed_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("memory.events"), "low 0\nhigh 2\noom 1\noom_kill 1\n").unwrap();
        assert_eq!(keyed(t.path(), "memory.events", "oom_kill"), Some(1));
        assert_eq!(keyed(t.path(), "memory.events", "nope"), None);
    }
}
