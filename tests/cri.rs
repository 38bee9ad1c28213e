//! `hull daemon` through k8s-cri's generated client over its unix socket:
//! the socket and its lock, signals, Version/Status/RuntimeConfig, the
//! config file and flags, and the ImageService against a local registry.
mod common;
mod cri_common;
mod image_common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use cri_common::*;
use image_common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn socket_lock_signals_and_runtime_info() {
    if !require_root() {
        return;
    }
    let mut d = Daemon::start(&[]);
    let md = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600, "root only");

    // A second daemon on the same socket is refused, by name.
    let o = run_cmd(&mut d.command(), CMD_TIMEOUT);
    assert_fails_mentioning(&o, &["another hull daemon is serving", d.socket.to_str().unwrap()]);
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_ok(), "the first one still serves");

    let mut rt = d.runtime().await;
    let v = rt.version(cri::VersionRequest { version: "0.1.0".into() }).await.unwrap().into_inner();
    assert_eq!((v.runtime_name.as_str(), v.runtime_api_version.as_str()), ("hull", "v1"));
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

    let st = rt.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let conds = st.status.unwrap().conditions;
    let cond = |t: &str| conds.iter().find(|c| c.r#type == t).unwrap().clone();
    assert!(cond("RuntimeReady").status);
    let net = cond("NetworkReady");
    assert!(!net.status, "no CNI config in the test's conf dir");
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(net.message.contains("no-cni"), "{}", net.message);
    let info: serde_json::Value = serde_json::from_str(&st.info["config"]).unwrap();
    assert_eq!(info["config"]["socket"], d.socket.to_str().unwrap());

    let rc = rt.runtime_config(cri::RuntimeConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(rc.linux.unwrap().cgroup_driver, cri::CgroupDriver::Cgroupfs as i32);
    let upd = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig { network_config: Some(cri::NetworkConfig { pod_cidr: cidr.into() }) }),
    };
    rt.update_runtime_config(upd("10.88.0.0/16")).await.unwrap();
    // Dual stack: one CIDR per family. Without cni_conf_template nothing is written.
    rt.update_runtime_config(upd("10.88.0.0/16, fd00:88::/64")).await.unwrap();
    assert_eq!(std::fs::read_dir(d.path("no-cni")).unwrap().count(), 0);
    for bad in ["10.88.0.0/99", "10.88.0.0/16,nope"] {
        let e = err(rt.update_runtime_config(upd(bad)).await);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("pod_cidr"), "{}", e.message());
    }

    // What hull does not do says so.
    let e = err(rt
        .checkpoint_container(cri::CheckpointContainerRequest { container_id: "x".into(), ..Default::default() })
        .await);
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("checkpoint"), "{}", e.message());
    // An API the bindings have but hull does not serve (the old v1alpha2).
    let mut old = k8s_cri::v1alpha2::runtime_service_client::RuntimeServiceClient::new(d.channel().await);
    assert_eq!(code(old.version(k8s_cri::v1alpha2::VersionRequest::default()).await), Code::Unimplemented);
    let m = rt.list_metric_descriptors(cri::ListMetricDescriptorsRequest {}).await.unwrap().into_inner();
    assert!(m.descriptors.is_empty());

    // SIGTERM: exit 0, the socket goes; the log says why. An open event
    // stream ends with the daemon rather than holding it up.
    let mut events = rt.get_container_events(cri::GetEventsRequest {}).await.unwrap().into_inner();
    let t = std::time::Instant::now();
    let status = tokio::task::block_in_place(|| d.terminate());
    assert!(status.success(), "{status}: {}", d.log());
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}: {}", t.elapsed(), d.log());
    assert!(!matches!(events.message().await, Ok(Some(_))), "the stream ended");
    assert!(d.log().contains("stopped"), "{}", d.log());
    drop(rt);
    assert!(!d.socket.exists());
    assert!(d.log().contains("SIGTERM"), "{}", d.log());

    // After a SIGKILL the stale socket is replaced by the next daemon.
    d.restart();
    d.kill9();
    assert!(d.socket.exists(), "a killed daemon leaves its socket");
    d.restart();
    let mut rt = d.runtime().await;
    rt.version(cri::VersionRequest::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn config_file_flags_and_socket_group() {
    if !require_root() {
        return;
    }
    let cni = tempfile::tempdir().unwrap();
    std::fs::write(
        cni.path().join("10-test.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "hull-test-net", "plugins": [{"type": "bridge"}]}"#,
    )
    .unwrap();
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("hull.toml");
    // The file's cni_conf_dir is overridden by the test's --cni-conf-dir;
    // its log_format applies; shutdown_timeout_seconds bounds SIGTERM.
    std::fs::write(&cfg, "cni_conf_dir = \"/nonexistent\"\nlog_format = \"json\"\nshutdown_timeout_seconds = 3\n").unwrap();
    let mut d = Daemon::start(&["--config", cfg.to_str().unwrap(), "--socket-group", "0", "--cni-conf-dir", cni.path().to_str().unwrap()]);
    let md = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o660, 0), "--socket-group opens it to the group");
    let mut rt = d.runtime().await;
    let st = rt.status(cri::StatusRequest::default()).await.unwrap().into_inner();
    let net = st.status.unwrap().conditions.into_iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(net.status, "{net:?}");
    assert!(net.message.contains("hull-test-net"), "{}", net.message);
    drop(rt);
    assert!(d.terminate().success());
    let lines: Vec<serde_json::Value> = d
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("JSON log line: {e}: {l}")))
        .collect();
    assert!(lines.iter().any(|v| v["fields"]["message"] == "serving CRI v1"), "{}", d.log());
    let rpc = lines.iter().find(|v| v["span"]["rpc"] == "Status").expect("a line in the Status RPC's span");
    assert_eq!(rpc["level"], "DEBUG");

    // Bad settings: clear errors naming the field, nothing started.
    for (text, needle) in [
        ("sokcet = \"/x\"\n", "sokcet"),
        ("shutdown_timeout_seconds = 999999\n", "shutdown_timeout_seconds"),
        ("stream_address = \"nowhere\"\n", "stream_address"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let o = run_cmd(&mut d.command(), CMD_TIMEOUT);
        assert_fails_mentioning(&o, &[needle]);
    }
    // A CNI template with an action hull does not know: refused at start, by name.
    std::fs::write(&cfg, "").unwrap();
    let tpl = cfg_dir.path().join("net.tmpl");
    std::fs::write(&tpl, "{\"subnet\": \"{{index .PodCIDRRanges 0}}\"}").unwrap();
    let o = run_cmd(d.command().arg("--cni-conf-template").arg(&tpl), CMD_TIMEOUT);
    assert_fails_mentioning(&o, &["cni_conf_template"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("line 1: {{index .PodCIDRRanges 0}}: unknown action"), "{stderr}");
    assert!(!d.socket.exists(), "nothing served");
}

/// `--socket-group` by name: hull is linked statically and looks names up
/// in glibc's built-in sources only (src/linux/nss.rs); /etc/group's is one.
#[tokio::test(flavor = "multi_thread")]
async fn socket_group_by_name_from_etc_group() {
    if !require_root() {
        return;
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let (name, gid) = groups
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.first()?.to_string(), f.get(2)?.parse::<u32>().ok()?))
        })
        .find(|(n, g)| *g != 0 && !n.is_empty())
        .expect("a group with a gid other than 0 in /etc/group");
    let mut d = Daemon::start(&["--socket-group", &name]);
    let md = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((md.permissions().mode() & 0o777, md.gid()), (0o660, gid), "--socket-group {name}");
    assert!(d.terminate().success());

    let unknown = Daemon::dry(&["--socket-group", "hull-no-such-group"]);
    let out = unknown.command().output().unwrap();
    assert!(!out.status.success());
    let log = unknown.log();
    assert!(log.contains("no group named \"hull-no-such-group\""), "{log}");
}

/// A SIGTERM that comes as soon as the socket is there, while the daemon
/// is still setting up (image store, runtime, tokio, its handlers), stops
/// it as cleanly as one later: exit 0, the socket removed.
#[test]
fn sigterm_during_start_up_stops_the_daemon_cleanly() {
    if !require_root() {
        return;
    }
    for round in 0..5 {
        let d = Daemon::dry(&[]);
        let mut child = d.command().spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !d.socket.exists() {
            assert!(child.try_wait().unwrap().is_none(), "round {round}: exited early: {}", d.log());
            assert!(std::time::Instant::now() < deadline, "round {round}: no socket: {}", d.log());
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let st = wait_child(&mut child, std::time::Duration::from_secs(30));
        assert!(st.success(), "round {round}: {st}: {}", d.log());
        assert!(!d.socket.exists(), "round {round}: the socket is left behind");
    }
}

fn image_ref(r: &Registry, repo: &str) -> String {
    format!("{}/{repo}", r.host())
}

#[tokio::test(flavor = "multi_thread")]
async fn image_service_against_a_registry() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push("hull-test:latest", "test/cri:v1", false);
    reg.push("hull-test:multi", "test/multi:v1", true);
    let fx = fixture_digests();
    let id = fx["config"].as_str().unwrap().to_string();
    let d = Daemon::start(&[]);
    let mut im = d.images().await;
    let spec = |image: &str| Some(cri::ImageSpec { image: image.into(), ..Default::default() });

    // Pull; the reply is the image id.
    let name = image_ref(&reg, "test/cri:v1");
    let r = im
        .pull_image(cri::PullImageRequest { image: spec(&name), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.image_ref, id);

    // Concurrent pulls of one image share one download.
    let multi = image_ref(&reg, "test/multi:v1");
    let mut handles = Vec::new();
    for _ in 0..3 {
        let mut c = im.clone();
        let req = cri::PullImageRequest { image: spec(&multi), ..Default::default() };
        handles.push(tokio::spawn(async move { c.pull_image(req).await }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().into_inner().image_ref, id);
    }
    let pulled = d.log().lines().filter(|l| l.contains("pulled") && l.contains("test/multi:v1")).count();
    assert_eq!(pulled, 1, "one download for three requests: {}", d.log());

    // Status: tags, digests (the index for the multi-platform one), size, uid.
    let st = im
        .image_status(cri::ImageStatusRequest { image: spec(&name), verbose: true })
        .await
        .unwrap()
        .into_inner();
    let img = st.image.unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec![name.clone(), multi.clone()]);
    assert!(
        img.repo_digests
            .contains(&format!("{}@{}", image_ref(&reg, "test/cri"), fx["manifest"].as_str().unwrap())),
        "{:?}",
        img.repo_digests
    );
    assert!(
        img.repo_digests
            .contains(&format!("{}@{}", image_ref(&reg, "test/multi"), fx["index"].as_str().unwrap())),
        "{:?}",
        img.repo_digests
    );
    assert!(img.size > 100_000, "{}", img.size);
    assert_eq!(img.uid, Some(cri::Int64Value { value: 0 }), "User 0:0 in the config");
    assert!(st.info["info"].contains("imageSpec"));
    // By id, by id prefix, by repo digest.
    for key in [id.clone(), id[7..19].to_string(), format!("{}@{}", image_ref(&reg, "test/cri"), fx["manifest"].as_str().unwrap())] {
        let st = im
            .image_status(cri::ImageStatusRequest { image: spec(&key), verbose: false })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.image.map(|i| i.id), Some(id.clone()), "{key}");
    }
    // Not found: an empty reply, as the kubelet expects.
    let st = im
        .image_status(cri::ImageStatusRequest { image: spec("docker.io/library/nothing:here"), verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());

    let list = im.list_images(cri::ListImagesRequest { filter: None }).await.unwrap().into_inner();
    assert_eq!(list.images.len(), 1, "one image under two names");
    let filtered = im
        .list_images(cri::ListImagesRequest { filter: Some(cri::ImageFilter { image: spec("nothing") }) })
        .await
        .unwrap()
        .into_inner();
    assert!(filtered.images.is_empty());

    let fs = im.image_fs_info(cri::ImageFsInfoRequest {}).await.unwrap().into_inner();
    let ifs = &fs.image_filesystems[0];
    assert_eq!(ifs.fs_id.as_ref().unwrap().mountpoint, d.image_root().to_str().unwrap());
    assert!(ifs.used_bytes.as_ref().unwrap().value > 100_000);
    assert!(ifs.inodes_used.as_ref().unwrap().value > 10);
    assert_eq!(fs.container_filesystems.len(), 1);

    // Remove by tag: that name goes, the image stays; by id: all of it.
    im.remove_image(cri::RemoveImageRequest { image: spec(&name) }).await.unwrap();
    let st = im
        .image_status(cri::ImageStatusRequest { image: spec(&name), verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());
    let st = im
        .image_status(cri::ImageStatusRequest { image: spec(&multi), verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.image.unwrap().repo_tags, vec![multi.clone()]);
    im.remove_image(cri::RemoveImageRequest { image: spec(&id) }).await.unwrap();
    assert!(im
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .is_empty());
    let blobs = std::fs::read_dir(d.image_root().join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 0, "the image's blobs are collected");
    // Removing what is not there succeeds.
    im.remove_image(cri::RemoveImageRequest { image: spec(&id) }).await.unwrap();
    im.remove_image(cri::RemoveImageRequest { image: spec("never/pulled:x") }).await.unwrap();

    // Bad requests name the field.
    let e = err(im.pull_image(cri::PullImageRequest::default()).await);
    assert_eq!((e.code(), e.message()), (Code::InvalidArgument, "image: missing"));
    let e = err(im.pull_image(cri::PullImageRequest { image: spec(""), ..Default::default() }).await);
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(code(im.pull_image(cri::PullImageRequest { image: spec("Bad Ref!"), ..Default::default() }).await), Code::InvalidArgument);
    let bad_auth = cri::AuthConfig { auth: "%%%".into(), ..Default::default() };
    let e = err(im
        .pull_image(cri::PullImageRequest { image: spec(&name), auth: Some(bad_auth), ..Default::default() })
        .await);
    assert!(e.message().starts_with("auth.auth"), "{}", e.message());
    // A pull that fails says which reference and why.
    let e = err(im
        .pull_image(cri::PullImageRequest { image: spec(&image_ref(&reg, "test/none:v1")), ..Default::default() })
        .await);
    assert!(e.message().contains("test/none:v1") && e.message().contains("not found"), "{}", e.message());
    assert_eq!(std::fs::read_dir(d.image_root().join("ingest")).unwrap().count(), 0, "nothing left in ingest");
}
