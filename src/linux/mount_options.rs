//! mount(8)-style option strings from config.json, turned into mount flags,
//! propagation flags and the filesystem data string.
use nix::mount::MsFlags;

/// The parsed options of one mount entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount(2) call itself.
    pub flags: MsFlags,
    /// Flags that only a bind-remount can apply (ro, nosuid... on a bind).
    pub clear: MsFlags,
    /// Propagation changes, applied with separate mount(2) calls.
    pub propagation: Vec<MsFlags>,
    /// Everything else, passed as the filesystem's data string.
    pub data: Vec<String>,
    /// The recursive options (rro, rnoatime...), for mount_setattr(2).
    pub recursive: RecursiveAttrs,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            recursive: RecursiveAttrs::default(),
        }
    }
}

/// `MOUNT_ATTR_*` bits to set and clear on a mount and all its submounts
/// (runtime-spec 1.1's recursive mount options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clear: u64,
    /// The options as written, for messages.
    pub names: Vec<String>,
}

impl RecursiveAttrs {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The atime mode is a 3-bit field: relatime (0), noatime, strictatime.
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Every recursive option hull implements (for `hull features`).
pub const RECURSIVE_OPTIONS: [&str; 18] = [
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnoatime",
    "ratime",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// (set, clear) for a recursive option. An atime mode is changed by
/// clearing the whole field and setting the new mode; "ratime",
/// "rnostrictatime" and "rnorelatime" leave the kernel's default mode,
/// relatime (as mount(2) does for atime, nostrictatime and norelatime).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
        "ratime" | "rrelatime" | "rnorelatime" | "rnostrictatime" => (0, MOUNT_ATTR_ATIME_MASK),
        _ => return None,
    })
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// The propagation flag for a rootfsPropagation or option name.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parse one entry's options. Unknown words are filesystem data (size=,
/// mode=, newinstance...), as with mount(8); only options that look like
/// runtime flags but that hull cannot honour are refused.
pub fn parse(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            // Idmapped mounts are prepared from the mount's mappings
            // (linux::idmap), not by mount(2).
            "idmap" | "ridmap" => continue,
            "tmpcopyup" => {
                return Err(format!("option {opt:?} is not supported"));
            }
            other if recursive_attr(other).is_some() => {
                let (set, clear) = recursive_attr(other).expect("checked");
                let r = &mut out.recursive;
                // A later option wins over an earlier one.
                r.set = (r.set & !clear & !set) | set;
                r.clear = (r.clear & !set) | clear;
                r.names.push(other.to_string());
                continue;
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    out.propagation.push(p);
                } else {
                    out.data.push(other.to_string());
                }
                continue;
            }
        };
        out.flags.insert(set);
        out.flags.remove(clear);
        out.clear.insert(clear);
        out.clear.remove(set);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> MountOptions {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = opts(&["nosuid", "noexec", "mode=755", "size=65536k", "rslave", "ro"]);
        assert!(o.flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY));
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    }

    #[test]
    fn later_option_wins() {
        let o = opts(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        let o = opts(&["rbind"]);
        assert!(o.is_bind() && o.flags.contains(MsFlags::MS_REC));
    }

    #[test]
    fn recursive_options_become_mount_attrs() {
        let o = opts(&["rbind", "rro", "rnoatime", "rnosuid"]);
        assert_eq!(o.recursive.set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NOSUID);
        assert_eq!(o.recursive.clear, MOUNT_ATTR_ATIME_MASK);
        assert!(o.data.is_empty() && o.flags.contains(MsFlags::MS_BIND | MsFlags::MS_REC));
        let o = opts(&["rro", "rrw", "rstrictatime"]);
        assert_eq!(o.recursive.set, MOUNT_ATTR_STRICTATIME);
        assert_eq!(o.recursive.clear, MOUNT_ATTR_RDONLY | MOUNT_ATTR_ATIME_MASK);
        for name in RECURSIVE_OPTIONS {
            assert!(recursive_attr(name).is_some(), "{name}");
        }
    }

    #[test]
    fn unsupported_options_are_named() {
        let err = parse(&["tmpcopyup".to_string()]).unwrap_err();
        assert!(err.contains("tmpcopyup"));
    }
}
