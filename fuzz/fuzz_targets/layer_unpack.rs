//! A layer (tar, maybe gzip or zstd) unpacked into a temp dir: no panic, and
//! nothing is written outside the dir.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().unwrap();
    let dest = t.path().join("layer");
    let outside = t.path().join("outside");
    std::fs::create_dir(&dest).unwrap();
    std::fs::create_dir(&outside).unwrap();
    let _ = hull::image::unpack::unpack_layer(data, &dest, &[outside.clone()], "fuzz");
    let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.len() == 2, "an entry was written next to the layer dir: {left:?}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "an entry was written into the lower dir");
});
