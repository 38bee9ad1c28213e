//! Image manifests, indexes and configs as a registry or layout serves them.
#![no_main]
use libfuzzer_sys::fuzz_target;

use hull::image::manifest::{self, ImageConfig, Index, Manifest, Platform};

fuzz_target!(|data: &[u8]| {
    let _ = manifest::sniff_media_type(data);
    if let Ok(i) = manifest::parse::<Index>("index", data) {
        let _ = i.select(&Platform::host());
    }
    let _ = manifest::parse::<Manifest>("manifest", data);
    if let Ok(c) = manifest::parse::<ImageConfig>("config", data) {
        let _ = hull::image::bundle::process_env(&c, &["A=b".to_string()]);
        let _ = hull::image::bundle::process_args(&c, &[], &[]);
    }
});
