//! Pod manifests: parse and validate, then translate every container to its
//! OCI resources, probes and config (with no volumes and no sandbox, so the
//! translation touches nothing outside a temp dir).
#![no_main]
use libfuzzer_sys::fuzz_target;

use hull::pod::{bundle, manifest, probe, store::PodStore};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = manifest::parse(text) else { return };
    let _ = bundle::pod_resources(&m.pod);
    let Some(spec) = m.pod.spec.as_ref() else { return };
    let t = tempfile::tempdir().unwrap();
    let store = PodStore::new(t.path());
    let dir = store.dir("fuzz");
    let ctx = bundle::BundleContext { pod: &m.pod, image_root: t.path(), dir: &dir, holder: None, volumes: &[], cgroup_parent: "/fuzz" };
    for (i, c) in spec.containers.iter().chain(spec.init_containers.iter().flatten()).enumerate() {
        let field = format!("spec.containers[{i}]");
        let _ = probe::specs_of(c);
        let _ = bundle::resources(c, &field);
        if c.volume_mounts.as_ref().is_none_or(|v| v.is_empty()) {
            if let Ok(config) = bundle::config(&ctx, c, &field, t.path(), true, None) {
                if let Ok(spec) = hull::oci::config::parse_spec(config.to_string().as_bytes()) {
                    let _ = hull::oci::config::validate(&spec);
                }
            }
        }
    }
    let _ = bundle::write_etc_files(&m.pod, &dir, &["10.0.0.2".to_string()]);
});
