//! `--systemd-cgroup`: a `linux.cgroupsPath` of the systemd form
//! `slice:prefix:name`, mapped onto cgroupfs directories where systemd
//! would put the unit (`/<slice path>/<prefix>-<name>.scope`). hull talks
//! to no systemd: it creates the directories itself, as for any other path.
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The default when the config has no cgroupsPath: `prefix` is `hull`
/// for hull's default root, its tag for any other (see `oci::create`).
pub fn default_path(prefix: &str, id: &str) -> String {
    format!("system.slice:{prefix}:{id}")
}

/// `slice:prefix:name` → the cgroupfs path (absolute within each hierarchy).
pub fn to_cgroupfs(path: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::Config(format!("linux.cgroupsPath: {path:?}: {why}"));
    let parts: Vec<&str> = path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(bad("with --systemd-cgroup it must be of the form slice:prefix:name"));
    };
    if name.is_empty() {
        return Err(bad("the name part is empty"));
    }
    for p in [slice, prefix, name] {
        if p.contains('/') || p == ".." || p == "." {
            return Err(bad("its parts must not contain '/'"));
        }
    }
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut out = expand_slice(slice).map_err(|e| bad(&e))?;
    // A name that is itself a slice is used as is (a sub-slice), as runc does.
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    out.push(unit);
    Ok(out)
}

/// The cgroupfs path of a container below a pod cgroup: with `scopes`
/// (the systemd driver) and under a slice, a scope `hull-<id>.scope` (what
/// systemd would call a unit there, as containerd's
/// `cri-containerd-<id>.scope`); else `<id>`, whatever the parent's name
/// (containerd's cgroupfs rule: the parent joined with the id).
pub fn child_path(parent: &str, id: &str, scopes: bool) -> String {
    let parent = parent.trim_end_matches('/');
    if scopes && parent.ends_with(".slice") {
        format!("{parent}/hull-{id}.scope")
    } else {
        format!("{parent}/{id}")
    }
}

/// systemd's slice nesting: "a-b-c.slice" lives in
/// "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root.
pub fn expand_slice(slice: &str) -> std::result::Result<PathBuf, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice name (it must end in .slice)"));
    };
    let mut out = PathBuf::from("/");
    if base == "-" {
        return Ok(out);
    }
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(format!("{slice:?} is not a valid slice name"));
    }
    let mut prefix = String::new();
    for part in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd() {
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        assert_eq!(expand_slice("system.slice").unwrap(), PathBuf::from("/system.slice"));
        assert_eq!(expand_slice("a-b-c.slice").unwrap(), PathBuf::from("/a.slice/a-b.slice/a-b-c.slice"));
        assert!(expand_slice("a--b.slice").is_err());
        assert!(expand_slice("-a.slice").is_err());
        assert!(expand_slice("nope").is_err());
    }

    #[test]
    fn children_of_slices_are_scopes() {
        assert_eq!(child_path("/a.slice/a-b.slice", "c1", true), "/a.slice/a-b.slice/hull-c1.scope");
        assert_eq!(child_path("/kubepods/besteffort/pod1/", "c1", true), "/kubepods/besteffort/pod1/c1");
        // cgroupfs: a slice-named directory is a directory like any other.
        assert_eq!(child_path("/a.slice/a-b.slice", "c1", false), "/a.slice/a-b.slice/c1");
        assert_eq!(child_path("/kubepods/besteffort/pod1", "c1", false), "/kubepods/besteffort/pod1/c1");
    }

    #[test]
    fn paths_map_onto_cgroupfs() {
        assert_eq!(to_cgroupfs("user-1000.slice:docker:abc").unwrap(), PathBuf::from("/user.slice/user-1000.slice/docker-abc.scope"));
        assert_eq!(to_cgroupfs(":hull:x").unwrap(), PathBuf::from("/system.slice/hull-x.scope"));
        assert_eq!(to_cgroupfs("system.slice::x").unwrap(), PathBuf::from("/system.slice/x.scope"));
        assert_eq!(to_cgroupfs("-.slice:p:sub.slice").unwrap(), PathBuf::from("/sub.slice"));
        assert_eq!(to_cgroupfs(&default_path("hull", "id1")).unwrap(), PathBuf::from("/system.slice/hull-id1.scope"));
        for bad in ["/a/b", "a:b", "a.slice:p:", "a.slice:p:../x", "a:b:c:d", "notaslice:p:n"] {
            assert!(to_cgroupfs(bad).is_err(), "{bad}");
        }
    }
}
