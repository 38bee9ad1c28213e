//! CRI log lines, as `hull pod logs` reads them back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = hull::monitor::crilog::parse_line(line);
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("log");
    std::fs::write(&p, data).unwrap();
    let mut out = Vec::new();
    let _ = hull::pod::print_log(&p, 0, &mut out);
});
