//! v1 `memory`: limit, memory+swap limit, soft limit (reservation),
//! swappiness, OOM killer switch, use_hierarchy; usage and the OOM counter.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{keyed, read_keyed, read_u64, write, Controller};
use crate::cgroups::stats::{MemoryEntry, Stats};
use crate::error::{Error, Result};

pub struct Memory;

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

impl Controller for Memory {
    const NAME: &'static str = "memory";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.memory().as_ref().map(|_| "linux.resources.memory")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        let mut limit = m.limit().unwrap_or(0);
        let mut swap = m.swap().unwrap_or(0);
        // As runc: an unlimited memory limit without a swap value means
        // memory+swap unlimited too.
        if limit == -1 && swap == 0 {
            swap = -1;
        }
        if swap != 0 && !dir.join(MEMSW).exists() {
            if swap == -1 {
                swap = 0; // nothing to lift without swap accounting
            } else {
                return Err(Error::resource(
                    "linux.resources.memory.swap",
                    "the kernel has no swap accounting (memory.memsw.limit_in_bytes is missing)",
                ));
            }
        }
        if limit < -1 {
            limit = 0;
        }
        if limit != 0 && swap != 0 {
            // memory.limit must stay <= memsw.limit at every step: raise
            // memsw first when it grows, lower the limit first otherwise.
            let current = read_u64(dir, LIMIT).unwrap_or(u64::MAX);
            if swap == -1 || current < swap as u64 {
                write(dir, MEMSW, swap, "linux.resources.memory.swap")?;
                write(dir, LIMIT, limit, "linux.resources.memory.limit")?;
            } else {
                write(dir, LIMIT, limit, "linux.resources.memory.limit")?;
                write(dir, MEMSW, swap, "linux.resources.memory.swap")?;
            }
        } else if limit != 0 {
            write(dir, LIMIT, limit, "linux.resources.memory.limit")?;
        } else if swap != 0 {
            write(dir, MEMSW, swap, "linux.resources.memory.swap")?;
        }
        if let Some(res) = m.reservation().filter(|r| *r != 0) {
            write(dir, "memory.soft_limit_in_bytes", res, "linux.resources.memory.reservation")?;
        }
        if let Some(sw) = m.swappiness() {
            write(dir, "memory.swappiness", sw, "linux.resources.memory.swappiness")?;
        }
        if m.disable_oom_killer() == Some(true) {
            write(dir, "memory.oom_control", 1, "linux.resources.memory.disableOOMKiller")?;
        }
        if let Some(h) = m.use_hierarchy() {
            write(dir, "memory.use_hierarchy", u8::from(h), "linux.resources.memory.useHierarchy")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let entry = |prefix: &str| MemoryEntry {
            usage: read_u64(dir, &format!("{prefix}usage_in_bytes")).unwrap_or(0),
            max: read_u64(dir, &format!("{prefix}max_usage_in_bytes")).unwrap_or(0),
            limit: read_u64(dir, &format!("{prefix}limit_in_bytes")).unwrap_or(0),
            failcnt: read_u64(dir, &format!("{prefix}failcnt")).unwrap_or(0),
        };
        let m = &mut stats.memory;
        m.usage = entry("memory.");
        m.swap = entry("memory.memsw.");
        m.kernel = entry("memory.kmem.");
        m.kernel_tcp = entry("memory.kmem.tcp.");
        m.raw = read_keyed(dir, "memory.stat").into_iter().collect();
        m.cache = m.raw.get("total_cache").or(m.raw.get("cache")).copied().unwrap_or(0);
    }
}

/// memsw counts memory and swap together: swap is memsw less memory, its
/// limit memsw's less memory's. A limit at the kernel's "unlimited"
/// (PAGE_COUNTER_MAX pages, near 2^63) is none.
pub fn swap_usage(dir: &Path) -> Option<crate::cgroups::SwapUsage> {
    const UNLIMITED: u64 = 1 << 62;
    let memsw = read_u64(dir, "memory.memsw.usage_in_bytes")?;
    let memsw_limit = read_u64(dir, "memory.memsw.limit_in_bytes")?;
    let usage = read_u64(dir, "memory.usage_in_bytes").unwrap_or(0);
    let limit = read_u64(dir, "memory.limit_in_bytes").unwrap_or(u64::MAX);
    let swap_limit = (memsw_limit < UNLIMITED).then(|| memsw_limit.saturating_sub(limit.min(memsw_limit)));
    Some(crate::cgroups::SwapUsage { usage: memsw.saturating_sub(usage), limit: swap_limit })
}

/// How many processes the OOM killer killed in this cgroup.
pub fn oom_kill_count(dir: &Path) -> Option<u64> {
    keyed(dir, "memory.oom_control", "oom_kill")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder};

    fn dir_with_files() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in [LIMIT, MEMSW, "memory.soft_limit_in_bytes", "memory.swappiness", "memory.oom_control"] {
            std::fs::write(t.path().join(f), "9223372036854771712").unwrap();
        }
        t
    }

    #[test]
    fn swap_is_memsw_less_memory() {
        let t = tempfile::tempdir().unwrap();
        let w = |f: &str, v: &str| std::fs::write(t.path().join(f), v).unwrap();
        assert_eq!(swap_usage(t.path()), None, "no swap accounting");
        w("memory.usage_in_bytes", "1000");
        w("memory.limit_in_bytes", "4096");
        w("memory.memsw.usage_in_bytes", "1500");
        w("memory.memsw.limit_in_bytes", "10240");
        assert_eq!(swap_usage(t.path()), Some(crate::cgroups::SwapUsage { usage: 500, limit: Some(6144) }));
        w("memory.memsw.limit_in_bytes", "9223372036854771712");
        assert_eq!(swap_usage(t.path()), Some(crate::cgroups::SwapUsage { usage: 500, limit: None }));
    }

    #[test]
    fn writes_limits() {
        let t = dir_with_files();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 26)
                    .swap(1i64 << 27)
                    .reservation(1i64 << 25)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        Memory::apply(t.path(), &r).unwrap();
        let r = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!(r(LIMIT), "67108864");
        assert_eq!(r(MEMSW), "134217728");
        assert_eq!(r("memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(r("memory.swappiness"), "10");
        assert_eq!(r("memory.oom_control"), "1");
    }

    #[test]
    fn unlimited_memory_lifts_swap_too() {
        let t = dir_with_files();
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        Memory::apply(t.path(), &r).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join(MEMSW)).unwrap(), "-1");
        assert_eq!(std::fs::read_to_string(t.path().join(LIMIT)).unwrap(), "-1");
    }

    #[test]
    fn swap_without_accounting_names_the_field() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(LIMIT), "0").unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(100i64).swap(200i64).build().unwrap())
            .build()
            .unwrap();
        let err = Memory::apply(t.path(), &r).unwrap_err().to_string();
        assert!(err.contains("linux.resources.memory.swap"), "{err}");
    }
}
