//! v1 `hugetlb`: hugetlb.<size>.limit_in_bytes per page size.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{read_u64, write, Controller};
use crate::cgroups::stats::{Hugetlb as HugetlbStats, Stats};
use crate::error::{Error, Result};

pub struct Hugetlb;

/// A page size as the kernel names it in file names ("2MB", "1GB", "64KB").
pub fn check_page_size(size: &str) -> Result<()> {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &size[digits.len()..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || !["KB", "MB", "GB"].contains(&unit) {
        return Err(Error::resource(
            "linux.resources.hugepageLimits.pageSize",
            format!("{size:?} is not a page size such as \"2MB\" or \"1GB\""),
        ));
    }
    Ok(())
}

impl Controller for Hugetlb {
    const NAME: &'static str = "hugetlb";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.hugepage_limits().as_ref().filter(|h| !h.is_empty()).map(|_| "linux.resources.hugepageLimits")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        for h in r.hugepage_limits().iter().flatten() {
            check_page_size(h.page_size())?;
            write(dir, &format!("hugetlb.{}.limit_in_bytes", h.page_size()), h.limit(), "linux.resources.hugepageLimits")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(size) = name.strip_prefix("hugetlb.").and_then(|n| n.strip_suffix(".usage_in_bytes")) else { continue };
            stats.hugetlb.insert(
                size.to_string(),
                HugetlbStats {
                    usage: read_u64(dir, &name).unwrap_or(0),
                    max: read_u64(dir, &format!("hugetlb.{size}.max_usage_in_bytes")).unwrap_or(0),
                    failcnt: read_u64(dir, &format!("hugetlb.{size}.failcnt")).unwrap_or(0),
                },
            );
        }
    }
}
