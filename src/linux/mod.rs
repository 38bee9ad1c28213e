//! What happens inside and around the new container process.
pub mod attrs;
pub mod bind;
pub mod channel;
pub mod console;
pub mod dmz;
pub mod idle;
pub mod idmap;
pub mod init;
pub mod lsm;
pub mod mount_options;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod rootfs;
pub mod safe_path;
pub mod syscall;
pub mod sysctl;
