//! v2 `hugetlb`: hugetlb.<size>.max per page size.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{keyed, read_u64, write, Controller};
use crate::cgroups::stats::{Hugetlb as HugetlbStats, Stats};
use crate::cgroups::v1::hugetlb::check_page_size;
use crate::error::Result;

pub struct Hugetlb;

impl Controller for Hugetlb {
    const NAME: &'static str = "hugetlb";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.hugepage_limits().as_ref().filter(|h| !h.is_empty()).map(|_| "linux.resources.hugepageLimits")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        for h in r.hugepage_limits().iter().flatten() {
            check_page_size(h.page_size())?;
            write(dir, &format!("hugetlb.{}.max", h.page_size()), h.limit(), "linux.resources.hugepageLimits")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(size) = name.strip_prefix("hugetlb.").and_then(|n| n.strip_suffix(".current")) else { continue };
            stats.hugetlb.insert(
                size.to_string(),
                HugetlbStats {
                    usage: read_u64(dir, &name).unwrap_or(0),
                    max: 0,
                    failcnt: keyed(dir, &format!("hugetlb.{size}.events"), "max").unwrap_or(0),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxHugepageLimitBuilder, LinuxResourcesBuilder};

    #[test]
    fn writes_max_and_checks_size() {
        let t = crate::cgroups::controller::fake_cgroup(&["hugetlb.2MB.max"]);
        let lim = |s: &str| {
            LinuxResourcesBuilder::default()
                .hugepage_limits(vec![LinuxHugepageLimitBuilder::default().page_size(s).limit(1i64 << 21).build().unwrap()])
                .build()
                .unwrap()
        };
        Hugetlb::apply(t.path(), &lim("2MB")).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("hugetlb.2MB.max")).unwrap(), "2097152");
        let err = Hugetlb::apply(t.path(), &lim("../x")).unwrap_err().to_string();
        assert!(err.contains("pageSize"), "{err}");
    }
}
