//! v2 `memory`: memory.max, memory.swap.max, memory.low (reservation);
//! usage and the OOM counter from memory.events.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{keyed, read, read_keyed, read_u64, write, Controller};
use crate::cgroups::stats::Stats;
use crate::error::{Error, Result};

pub struct Memory;

/// A v2 memory value: -1 is "max", 0 is unset.
fn value(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// OCI `swap` is the v1 memory+swap limit; v2 swap.max is swap alone:
/// runc's conversion, including its errors.
pub fn swap_max(swap: i64, memory: i64) -> std::result::Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("cannot set a swap limit without a memory limit".into());
    }
    if memory < 0 {
        return Err(format!("invalid memory value {memory}"));
    }
    if swap < memory {
        return Err("memory+swap limit must be at least the memory limit".into());
    }
    Ok(swap - memory)
}

fn parse_max(s: Option<String>) -> u64 {
    match s.as_deref() {
        Some("max") | None => 0,
        Some(v) => v.parse().unwrap_or(0),
    }
}

impl Controller for Memory {
    const NAME: &'static str = "memory";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.memory().as_ref().map(|_| "linux.resources.memory")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::unsupported("linux.resources.memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer"));
        }
        if m.swappiness().is_some() {
            return Err(Error::unsupported("linux.resources.memory.swappiness", "cgroup v2 has no per-cgroup swappiness"));
        }
        if m.use_hierarchy() == Some(false) {
            return Err(Error::unsupported("linux.resources.memory.useHierarchy", "cgroup v2 is always hierarchical"));
        }
        let limit = m.limit().unwrap_or(0);
        let swap = m.swap().unwrap_or(0);
        // memory.swap.max is memory+swap minus the memory limit: given the
        // swap alone (an `update`), the limit in force is the one to count.
        let in_force = || read_u64(dir, "memory.max").and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
        let base = if limit == 0 && swap > 0 { in_force() } else { limit };
        let swap = swap_max(swap, base).map_err(|e| Error::resource("linux.resources.memory.swap", e))?;
        // swap.max first: it is independent of memory.max, and a failure
        // then leaves memory.max untouched (as runc orders it).
        if let Some(v) = value(swap) {
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", v, "linux.resources.memory.swap")?;
            } else if swap != -1 {
                // Without swap accounting "unlimited" holds anyway.
                return Err(Error::resource(
                    "linux.resources.memory.swap",
                    "the kernel has no swap accounting (memory.swap.max is missing)",
                ));
            }
        }
        if let Some(v) = value(limit) {
            write(dir, "memory.max", v, "linux.resources.memory.limit")?;
        }
        if let Some(v) = value(m.reservation().unwrap_or(0)) {
            write(dir, "memory.low", v, "linux.resources.memory.reservation")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let m = &mut stats.memory;
        m.usage.usage = read_u64(dir, "memory.current").unwrap_or(0);
        m.usage.max = read_u64(dir, "memory.peak").unwrap_or(0);
        m.usage.limit = parse_max(read(dir, "memory.max"));
        m.usage.failcnt = keyed(dir, "memory.events", "max").unwrap_or(0);
        m.swap.usage = read_u64(dir, "memory.swap.current").unwrap_or(0);
        m.swap.limit = parse_max(read(dir, "memory.swap.max"));
        m.raw = read_keyed(dir, "memory.stat").into_iter().collect();
        m.cache = m.raw.get("file").copied().unwrap_or(0);
    }
}

/// memory.swap.current, and memory.swap.max ("max": no limit).
pub fn swap_usage(dir: &Path) -> Option<crate::cgroups::SwapUsage> {
    let usage = read_u64(dir, "memory.swap.current")?;
    let limit = match read(dir, "memory.swap.max").as_deref() {
        Some("max") | None => None,
        Some(v) => v.parse().ok(),
    };
    Some(crate::cgroups::SwapUsage { usage, limit })
}

/// How many processes the OOM killer killed in this cgroup.
pub fn oom_kill_count(dir: &Path) -> Option<u64> {
    keyed(dir, "memory.events", "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

    fn mem(limit: i64, swap: i64, reservation: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(limit).swap(swap).reservation(reservation).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn swap_conversion_as_runc() {
        assert_eq!(swap_max(0, -1), Ok(-1));
        assert_eq!(swap_max(-1, 100), Ok(-1));
        assert_eq!(swap_max(0, 100), Ok(0));
        assert_eq!(swap_max(300, 100), Ok(200));
        assert_eq!(swap_max(100, 100), Ok(0));
        assert!(swap_max(50, 100).is_err());
        assert!(swap_max(50, 0).is_err());
    }

    #[test]
    fn writes_max_swap_low() {
        let t = crate::cgroups::controller::fake_cgroup(&["memory.max", "memory.swap.max", "memory.low"]);
        Memory::apply(t.path(), &mem(64 << 20, 128 << 20, 32 << 20)).unwrap();
        let r = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!(r("memory.max"), (64u64 << 20).to_string());
        assert_eq!(r("memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(r("memory.low"), (32u64 << 20).to_string());
        Memory::apply(t.path(), &mem(-1, 0, 0)).unwrap();
        assert_eq!(r("memory.max"), "max");
        assert_eq!(r("memory.swap.max"), "max");
    }

    #[test]
    fn swap_alone_counts_the_limit_in_force() {
        let t = crate::cgroups::controller::fake_cgroup(&["memory.max", "memory.swap.max"]);
        let r = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        std::fs::write(t.path().join("memory.max"), format!("{}\n", 128u64 << 20)).unwrap();
        Memory::apply(t.path(), &mem(0, 256 << 20, 0)).unwrap();
        assert_eq!(r("memory.swap.max"), (128u64 << 20).to_string());
        assert_eq!(r("memory.max"), format!("{}\n", 128u64 << 20), "the limit is not rewritten");
        // Below the limit in force, or with no limit: refused as before.
        assert!(Memory::apply(t.path(), &mem(0, 64 << 20, 0)).is_err());
        std::fs::write(t.path().join("memory.max"), "max\n").unwrap();
        assert!(Memory::apply(t.path(), &mem(0, 64 << 20, 0)).is_err());
    }

    #[test]
    fn bad_swap_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        let err = Memory::apply(t.path(), &mem(100, 50, 0)).unwrap_err().to_string();
        assert!(err.contains("linux.resources.memory.swap"), "{err}");
    }

    #[test]
    fn stats_and_oom_counter() {
        let t = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| std::fs::write(t.path().join(f), v).unwrap();
        w("memory.current", "4096\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("memory.stat", "anon 100\nfile 200\n");
        let mut s = Stats::default();
        Memory::stats(t.path(), &mut s);
        assert_eq!(s.memory.usage.usage, 4096);
        assert_eq!(s.memory.usage.limit, 0);
        assert_eq!(s.memory.usage.failcnt, 3);
        assert_eq!(s.memory.cache, 200);
        assert_eq!(oom_kill_count(t.path()), Some(1));
    }
}
