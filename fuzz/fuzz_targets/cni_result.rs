//! A CNI plugin's stdout: a result, or an error object.
#![no_main]
use libfuzzer_sys::fuzz_target;

use hull::network::result::{CniErrorOutput, CniResult};

fuzz_target!(|data: &[u8]| {
    let _ = CniErrorOutput::parse(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(r) = CniResult::parse(&v) {
            let _ = r.pod_ips();
        }
    }
});
