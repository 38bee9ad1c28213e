//! A container's writable layer as the stats report it.
use std::path::PathBuf;

use super::{ContainerId, Runtime};
use crate::image::store::{usage_of, Usage};

impl Runtime {
    /// The disk use (bytes, inodes) of a container's writable layer, the
    /// overlay upper directory its rootfs writes into, with its path; None
    /// when it has none (gone, or not made yet).
    pub fn writable_layer_usage(&self, id: &ContainerId) -> Option<(PathBuf, Usage)> {
        let upper = self.container_dir(id).join("upper");
        if !upper.is_dir() {
            return None;
        }
        let usage = usage_of(&upper);
        Some((upper, usage))
    }
}
