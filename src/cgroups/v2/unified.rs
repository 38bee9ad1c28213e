//! `linux.resources.unified`: raw cgroup v2 "file → value" pairs, written
//! last so that they override what the typed fields set.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{write, Controller};
use crate::error::{Error, Result};

pub struct Unified;

/// A key must name a controller file of the container's own directory:
/// "<controller>.<name>", no path separators, not a cgroup core file that
/// would move processes or change the tree.
pub fn check_key(key: &str) -> Result<()> {
    let field = format!("linux.resources.unified[{key:?}]");
    let bad = |why: &str| Err(Error::resource(field.clone(), why.to_string()));
    if key.is_empty() || key.contains('/') || key.contains('\0') || key.starts_with('.') {
        return bad("must be a file name in the cgroup directory, without path separators");
    }
    let Some((controller, name)) = key.split_once('.') else {
        return bad("must be of the form <controller>.<file>");
    };
    if controller.is_empty() || name.is_empty() {
        return bad("must be of the form <controller>.<file>");
    }
    if controller == "cgroup" && !matches!(name, "max.depth" | "max.descendants") {
        return bad("only cgroup.max.depth and cgroup.max.descendants may be set among the cgroup core files");
    }
    Ok(())
}

impl Controller for Unified {
    const NAME: &'static str = "";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.unified().as_ref().filter(|u| !u.is_empty()).map(|_| "linux.resources.unified")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let mut keys: Vec<_> = r.unified().iter().flatten().collect();
        keys.sort();
        for (k, _) in &keys {
            check_key(k)?;
        }
        for (k, v) in keys {
            write(dir, k, v, &format!("linux.resources.unified[{k:?}]"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxResourcesBuilder;

    #[test]
    fn keys_are_validated() {
        check_key("memory.high").unwrap();
        check_key("cgroup.max.depth").unwrap();
        for bad in ["", "../memory.max", "memory/max", "memory", ".memory", "cgroup.procs", "cgroup.subtree_control"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_pairs_or_nothing() {
        let t = crate::cgroups::controller::fake_cgroup(&["memory.high"]);
        let mut u = std::collections::HashMap::new();
        u.insert("memory.high".to_string(), "1000000".to_string());
        let r = LinuxResourcesBuilder::default().unified(u.clone()).build().unwrap();
        Unified::apply(t.path(), &r).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("memory.high")).unwrap(), "1000000");
        u.insert("../../escape.x".to_string(), "1".to_string());
        let r = LinuxResourcesBuilder::default().unified(u).build().unwrap();
        let err = Unified::apply(t.path(), &r).unwrap_err().to_string();
        assert!(err.contains("linux.resources.unified"), "{err}");
        assert!(!t.path().join("../../escape.x").exists());
    }
}
