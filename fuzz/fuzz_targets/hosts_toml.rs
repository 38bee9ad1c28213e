//! containerd's hosts.toml (registry mirrors) for a reference.
#![no_main]
use libfuzzer_sys::fuzz_target;

use hull::image::{hosts, reference::Reference};

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docker.io");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("hosts.toml"), data).unwrap();
    let r = Reference::parse("busybox:latest").unwrap();
    let _ = hosts::hosts_for(Some(t.path()), &r, &[]);
});
