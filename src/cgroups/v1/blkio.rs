//! v1 `blkio`: weights (CFQ or BFQ file names), per-device weights and
//! throttling; bytes and operations for the stats.
use std::path::Path;

use oci_spec::runtime::{LinuxResources, LinuxThrottleDevice};

use crate::cgroups::controller::{read, write, Controller};
use crate::cgroups::stats::{parse_blkio_v1, Stats};
use crate::error::Result;

pub struct Blkio;

/// blkio.weight (CFQ) when the kernel has it, else blkio.bfq.weight (BFQ,
/// newer kernels), as runc picks.
fn weight_file(dir: &Path, leaf: bool) -> &'static str {
    match (leaf, dir.join("blkio.weight").exists()) {
        (false, true) => "blkio.weight",
        (false, false) => "blkio.bfq.weight",
        (true, _) => "blkio.leaf_weight",
    }
}

pub(crate) fn throttles(r: &LinuxResources) -> Vec<(&'static str, &'static str, &Vec<LinuxThrottleDevice>)> {
    let Some(b) = r.block_io() else { return vec![] };
    [
        ("blkio.throttle.read_bps_device", "linux.resources.blockIO.throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", "linux.resources.blockIO.throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", "linux.resources.blockIO.throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", "linux.resources.blockIO.throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ]
    .into_iter()
    .filter_map(|(f, field, list)| list.as_ref().map(|l| (f, field, l)))
    .collect()
}

impl Controller for Blkio {
    const NAME: &'static str = "blkio";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.block_io().as_ref().map(|_| "linux.resources.blockIO")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            write(dir, weight_file(dir, false), w, "linux.resources.blockIO.weight")?;
        }
        if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
            write(dir, weight_file(dir, true), w, "linux.resources.blockIO.leafWeight")?;
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(w) = d.weight() {
                let file = if dir.join("blkio.weight_device").exists() { "blkio.weight_device" } else { "blkio.bfq.weight_device" };
                write(dir, file, format!("{}:{} {w}", d.major(), d.minor()), "linux.resources.blockIO.weightDevice")?;
            }
            if let Some(w) = d.leaf_weight() {
                write(dir, "blkio.leaf_weight_device", format!("{}:{} {w}", d.major(), d.minor()), "linux.resources.blockIO.weightDevice")?;
            }
        }
        for (file, field, list) in throttles(r) {
            for d in list {
                write(dir, file, format!("{}:{} {}", d.major(), d.minor(), d.rate()), field)?;
            }
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        // The CFQ files when present and non-empty, else the throttle
        // layer's (which counts every I/O), as runc does.
        let pick = |names: [&str; 2]| {
            names
                .iter()
                .map(|n| parse_blkio_v1(&read(dir, n).unwrap_or_default()))
                .find(|e| !e.is_empty())
                .unwrap_or_default()
        };
        stats.blkio.io_service_bytes_recursive = pick(["blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"]);
        stats.blkio.io_serviced_recursive = pick(["blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive"]);
    }
}
