//! config.json: parse, then every check `create` makes before it makes anything.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = hull::oci::config::parse_spec(data) {
        let _ = hull::oci::config::validate(&spec);
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            let _ = hull::cgroups::check_supported(r);
        }
    }
});
