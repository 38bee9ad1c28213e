//! v2 `io`: io.weight or io.bfq.weight, per-device weights, io.max
//! throttling; bytes and operations from io.stat.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{read, write, Controller};
use crate::cgroups::stats::{BlkioEntry, Stats};
use crate::error::{Error, Result};

pub struct Io;

/// OCI (v1) blkio weight [10, 1000] → io.weight [1, 10000], as runc converts.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

impl Controller for Io {
    const NAME: &'static str = "io";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.block_io().as_ref().map(|_| "linux.resources.blockIO")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        if b.leaf_weight().is_some() || b.weight_device().iter().flatten().any(|d| d.leaf_weight().is_some()) {
            return Err(Error::unsupported("linux.resources.blockIO.leafWeight", "cgroup v2 has no leaf weights"));
        }
        // BFQ takes the v1 range as is; io.weight needs the conversion.
        let bfq = dir.join("io.bfq.weight").exists();
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            if bfq {
                write(dir, "io.bfq.weight", w, "linux.resources.blockIO.weight")?;
            } else {
                write(dir, "io.weight", blkio_weight_to_io(w), "linux.resources.blockIO.weight")?;
            }
        }
        for d in b.weight_device().iter().flatten() {
            let Some(w) = d.weight() else { continue };
            let (file, w) = if bfq { ("io.bfq.weight", u64::from(w)) } else { ("io.weight", blkio_weight_to_io(w)) };
            write(dir, file, format!("{}:{} {w}", d.major(), d.minor()), "linux.resources.blockIO.weightDevice")?;
        }
        let throttles = [
            ("rbps", "linux.resources.blockIO.throttleReadBpsDevice", b.throttle_read_bps_device()),
            ("wbps", "linux.resources.blockIO.throttleWriteBpsDevice", b.throttle_write_bps_device()),
            ("riops", "linux.resources.blockIO.throttleReadIOPSDevice", b.throttle_read_iops_device()),
            ("wiops", "linux.resources.blockIO.throttleWriteIOPSDevice", b.throttle_write_iops_device()),
        ];
        for (key, field, list) in throttles {
            for d in list.iter().flatten() {
                write(dir, "io.max", format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()), field)?;
            }
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let text = read(dir, "io.stat").unwrap_or_default();
        let (bytes, ios) = parse_io_stat(&text);
        stats.blkio.io_service_bytes_recursive = bytes;
        stats.blkio.io_serviced_recursive = ios;
    }
}

/// io.stat lines ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") →
/// runc's Read/Write entries for bytes and for operations.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else { continue };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    (bytes, ios)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder};

    #[test]
    fn weight_conversion() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(blkio_weight_to_io(500), 4950);
    }

    #[test]
    fn writes_weight_and_io_max() {
        let t = crate::cgroups::controller::fake_cgroup(&["io.weight", "io.max"]);
        let dev = LinuxThrottleDeviceBuilder::default().major(8i64).minor(0i64).rate(1048576u64).build().unwrap();
        let r = LinuxResourcesBuilder::default()
            .block_io(LinuxBlockIoBuilder::default().weight(500u16).throttle_read_bps_device(vec![dev]).build().unwrap())
            .build()
            .unwrap();
        Io::apply(t.path(), &r).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("io.weight")).unwrap(), "4950");
        assert_eq!(std::fs::read_to_string(t.path().join("io.max")).unwrap(), "8:0 rbps=1048576");
    }

    #[test]
    fn io_stat() {
        let (b, i) = parse_io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].op, "Write");
        assert_eq!(b[1].value, 20);
        assert_eq!(i[0].value, 1);
    }
}
