//! The cgroup hierarchies this process sees: from /proc/self/mountinfo
//! (where each is mounted) and /proc/self/cgroup (where we are in each).
use std::collections::HashMap;
use std::path::PathBuf;

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Controllers as named in /proc/self/cgroup ("cpu,cpuacct", "name=systemd").
    pub name: String,
    pub mount_point: PathBuf,
    /// The hierarchy path that is mounted at mount_point (usually "/").
    pub mount_root: String,
}

/// The v1 hierarchies mounted in this mount namespace, one per hierarchy.
pub fn v1_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut r = right.split_whitespace();
        if r.next() != Some("cgroup") {
            continue;
        }
        let super_opts = r.nth(1).unwrap_or("");
        let l: Vec<&str> = left.split_whitespace().collect();
        if l.len() < 5 {
            continue;
        }
        let known = [
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "net_cls",
            "net_prio",
            "blkio",
            "perf_event",
            "hugetlb",
            "pids",
            "rdma",
            "misc",
        ];
        let mut names: Vec<&str> = super_opts.split(',').filter(|o| known.contains(o) || o.starts_with("name=")).collect();
        if names.is_empty() {
            continue;
        }
        names.sort_by_key(|n| (n.starts_with("name="), *n));
        let name = names.join(",");
        if out.iter().any(|h| h.name == name) {
            continue; // the same hierarchy mounted twice
        }
        out.push(Hierarchy { name, mount_point: PathBuf::from(unescape(l[4])), mount_root: unescape(l[3]) });
    }
    out
}

/// The cgroup2 mount point, if any.
pub fn v2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        Some(PathBuf::from(unescape(left.split_whitespace().nth(4)?)))
    })
}

/// /proc/self/cgroup: hierarchy controllers (sorted, as in `Hierarchy::name`) → path.
pub fn own_cgroups(proc_cgroup: &str) -> HashMap<String, String> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let ctrls = parts.next()?;
            let path = parts.next()?;
            let mut names: Vec<&str> = ctrls.split(',').collect();
            names.sort_by_key(|n| (n.starts_with("name="), *n));
            Some((names.join(","), path.to_string()))
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal `\\NNN`.
/// (An escape above `\\377` cannot come from the kernel; it wraps, never
/// panics.)
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u16::from(b[i + 1] - b'0') * 64 + u16::from(b[i + 2] - b'0') * 8 + u16::from(b[i + 3] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/name\\040x rw - cgroup cgroup rw,name=systemd
32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 25 0:29 /sub /mnt/cpuset rw - cgroup cgroup rw,cpuset,cpuacct";

    #[test]
    fn finds_v1_hierarchies_and_v2_mount() {
        let h = v1_hierarchies(MI);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].name, "cpu");
        assert_eq!(h[1].name, "name=systemd");
        assert_eq!(h[1].mount_point, PathBuf::from("/sys/fs/cgroup/name x"));
        assert_eq!(h[2].name, "cpuacct,cpuset");
        assert_eq!(h[2].mount_root, "/sub");
        assert_eq!(v2_mount(MI), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn own_cgroup_names_are_sorted_like_hierarchies() {
        let own = own_cgroups("4:cpuset,cpuacct:/a\n1:name=systemd:/init.scope\n0::/\n");
        assert_eq!(own["cpuacct,cpuset"], "/a");
        assert_eq!(own["name=systemd"], "/init.scope");
        assert_eq!(own[""], "/");
    }
}
