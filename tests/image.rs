//! `hull image`: import/export of OCI layouts and docker-archives, ls,
//! inspect, rm (untag vs delete), prune, df. Each test has its own store
//! (`--image-root` in a temp dir). The fixture image is built once by
//! rootfs-fixtures/build-image.sh from the busybox rootfs.
mod common;
mod image_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use image_common::*;
use serde_json::Value;

#[test]
fn import_layout_ls_inspect() {
    if !require_root() {
        return;
    }
    let im = Images::new();
    let layout = image_layout();
    let out = im.ok(&["import", layout.to_str().unwrap()]);
    for name in ["latest", "multi", "gzip", "multi-gzip"] {
        assert!(out.contains(&format!("imported docker.io/library/hull-test:{name} ")), "{out}");
    }
    let ls = im.ok(&["ls"]);
    assert!(ls.contains("docker.io/library/hull-test:latest"), "{ls}");
    let fx = fixture_digests();
    let latest = im.inspect("hull-test");
    assert_eq!(latest["manifest_digest"], fx["manifest"]);
    assert_eq!(latest["id"], fx["config"]);
    // The index was resolved to the host's manifest.
    let multi = im.inspect("hull-test:multi");
    assert_eq!(multi["manifest_digest"], fx["manifest"]);
    assert_eq!(multi["index_digest"], fx["index"]);
    let snaps = latest["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 3);
    let top = PathBuf::from(snaps[2]["path"].as_str().unwrap());
    let l2 = PathBuf::from(snaps[1]["path"].as_str().unwrap());
    let base = PathBuf::from(snaps[0]["path"].as_str().unwrap());
    assert!(base.join("bin/busybox").is_file());
    assert_eq!(std::fs::read_to_string(top.join("etc/hull-release")).unwrap(), "layer3\n");
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(std::fs::symlink_metadata(top.join("opt/remove-me")).unwrap().file_type().is_char_device());
    assert_eq!(std::fs::metadata(l2.join("opt/hardlink")).unwrap().ino(), std::fs::metadata(l2.join("opt/data/a")).unwrap().ino());
    let df: Value = serde_json::from_str(&im.ok(&["df", "--format", "json"])).unwrap();
    assert_eq!(df["images"], 4);
    assert!(df["bytes"].as_u64().unwrap() > 1_000_000 && df["inodes"].as_u64().unwrap() > 10, "{df}");
    let o = im.hull(&["inspect", "nope:latest"]);
    assert_fails_mentioning(&o, &["not found"]);
}

#[test]
fn export_then_import_round_trips() {
    if !require_root() {
        return;
    }
    let im = Images::new();
    im.ok(&["import", image_layout().to_str().unwrap()]);
    let out = im.dir.path().join("exported");
    im.ok(&["export", "hull-test:latest", out.to_str().unwrap()]);
    // A tarball of the layout imports too, into another store.
    let tarball = im.dir.path().join("exported.tar");
    assert_ok(&run_cmd(Command::new("tar").arg("-C").arg(&out).arg("-cf").arg(&tarball).arg("."), CMD_TIMEOUT));
    let other = Images::new();
    let o = other.ok(&["import", tarball.to_str().unwrap()]);
    assert!(o.contains("docker.io/library/hull-test:latest"), "{o}");
    assert_eq!(other.inspect("hull-test")["manifest_digest"], fixture_digests()["manifest"]);
    // umoci reads what we wrote.
    if Path::new("/usr/bin/umoci").exists() {
        let o = run_cmd(Command::new("umoci").args(["ls", "--layout"]).arg(&out), CMD_TIMEOUT);
        assert_ok(&o);
        assert!(s(&o.stdout).contains("docker.io/library/hull-test:latest"), "{}", show(&o));
    } else {
        eprintln!("skipped: umoci check (umoci not installed)");
    }
}

#[test]
fn docker_archive_import() {
    if !require_root() {
        return;
    }
    // A docker-archive as `docker save` (25+) writes it: blobs by digest,
    // manifest.json naming config, layers and tags.
    let im = Images::new();
    let layout = image_layout();
    let fx = fixture_digests();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&fx["manifest"].as_str().unwrap()[7..])).unwrap()).unwrap();
    let arch = im.dir.path().join("archive");
    std::fs::create_dir_all(arch.join("blobs/sha256")).unwrap();
    let mut files = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    files.extend(manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));
    for d in &files {
        std::fs::copy(layout.join("blobs/sha256").join(&d[7..]), arch.join("blobs/sha256").join(&d[7..])).unwrap();
    }
    let entry = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", &files[0][7..]),
        "RepoTags": ["example.com/team/app:v1", "app:v2"],
        "Layers": files[1..].iter().map(|d| format!("blobs/sha256/{}", &d[7..])).collect::<Vec<_>>(),
    }]);
    std::fs::write(arch.join("manifest.json"), entry.to_string()).unwrap();
    let tarball = im.dir.path().join("archive.tar");
    assert_ok(&run_cmd(Command::new("tar").arg("-C").arg(&arch).arg("-cf").arg(&tarball).arg("."), CMD_TIMEOUT));
    let o = im.ok(&["import", tarball.to_str().unwrap()]);
    assert!(o.contains("example.com/team/app:v1") && o.contains("docker.io/library/app:v2"), "{o}");
    let app = im.inspect("example.com/team/app:v1");
    assert_eq!(app["id"], fx["config"], "same config, same image id");
    assert_eq!(app["snapshots"].as_array().unwrap().len(), 3);
}

#[test]
fn rm_untags_then_deletes_and_prune_collects() {
    if !require_root() {
        return;
    }
    let im = Images::new();
    im.ok(&["import", image_layout().to_str().unwrap()]);
    let id = im.inspect("hull-test")["id"].as_str().unwrap()[7..19].to_string();
    // By id with two names: refused without --force.
    let o = im.hull(&["rm", &id]);
    assert_fails_mentioning(&o, &["several names"]);
    // By name: untag only, the image stays under its other name.
    let out = im.ok(&["rm", "hull-test:multi"]);
    assert!(out.contains("Untagged: docker.io/library/hull-test:multi") && !out.contains("Deleted"), "{out}");
    assert_eq!(im.count("snapshots"), 3);
    let o = im.hull(&["rm", &id]);
    assert_fails_mentioning(&o, &["several names"]);
    // --force: every name goes, the image is deleted, blobs and snapshots collected.
    let out = im.ok(&["rm", "--force", &id]);
    assert!(out.contains("Untagged: docker.io/library/hull-test:latest") && out.contains("Deleted: sha256:"), "{out}");
    assert!(out.contains("Untagged: docker.io/library/hull-test:gzip"), "{out}");
    assert_eq!(im.ok(&["ls", "-q"]).trim(), "");
    assert_eq!(im.count("blobs/sha256"), 0);
    assert_eq!(im.count("snapshots"), 0);
    let o = im.hull(&["rm", "hull-test"]);
    assert_fails_mentioning(&o, &["not found"]);
    // Prune removes leftovers of interrupted writes.
    std::fs::write(im.root().join("ingest/blob-partial"), b"half a layer").unwrap();
    let out = im.ok(&["prune"]);
    assert!(out.contains("1 temp"), "{out}");
    assert_eq!(im.count("ingest"), 0);
}

#[test]
fn run_a_container_from_an_image_bundle() {
    run_from_bundle(false);
}

#[test]
fn run_a_container_from_a_copied_rootfs() {
    run_from_bundle(true);
}

fn run_from_bundle(copy: bool) {
    if !require_root() {
        return;
    }
    let im = Images::new();
    im.ok(&["import", image_layout().to_str().unwrap()]);
    let bundle = im.dir.path().join("bundle");
    let b = bundle.to_str().unwrap();
    // Whatever happens below, leave no overlay mounted.
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(bundle.join("rootfs"));
    // Kubernetes-style args replace Cmd and keep the Entrypoint (/bin/sh -c).
    let script = "ls /opt /opt/data; cat /etc/hull-release; echo env=$HULL_IMAGE,$EXTRA; pwd; id -u; echo hi > /new; cat /opt/hardlink";
    let mut args = vec!["bundle", "hull-test", b, "--env", "EXTRA=1"];
    if copy {
        args.push("--copy");
    }
    args.extend(["--", script]);
    im.ok(&args);
    let state = im.dir.path().join("state");
    let id = unique_id("image-run");
    let run = |args: &[&str]| run_cmd(Command::new(runtime()).arg("--root").arg(&state).args(args), CMD_TIMEOUT);
    let o = run(&["run", "-b", b, &id]);
    assert_ok(&o);
    let out = s(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    // Whiteout: no /opt/remove-me; opaque dir: only c in /opt/data.
    assert_eq!(lines, ["/opt:", "data", "hardlink", "", "/opt/data:", "c", "layer3", "env=test,1", "/opt", "0", "a"], "{}", show(&o));
    // Writes went to the bundle's own upper layer (or copy), not to the snapshots.
    let written = if copy { bundle.join("rootfs/new") } else { bundle.join(".hull-image/upper/new") };
    assert_eq!(std::fs::read_to_string(written).unwrap(), "hi\n");
    let snaps = im.inspect("hull-test")["snapshots"].clone();
    for sn in snaps.as_array().unwrap() {
        assert!(!Path::new(sn["path"].as_str().unwrap()).join("new").exists());
    }
    // Removing the image while a rootfs uses it keeps its snapshots (lease);
    // a copy needs none.
    im.ok(&["rm", "--force", &im.inspect("hull-test")["id"].as_str().unwrap()[7..19]]);
    assert_eq!(im.count("snapshots"), if copy { 0 } else { 3 });
    assert!(bundle.join("rootfs/bin/busybox").exists());
    im.ok(&["unbundle", b]);
    assert!(!bundle.join("rootfs").exists() && !bundle.join(".hull-image").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(b), "overlay left mounted");
    im.ok(&["prune"]);
    assert_eq!(im.count("snapshots"), 0);
    assert!(bundle.exists() && !bundle.join("config.json").exists());
}

#[test]
fn mount_and_umount() {
    if !require_root() {
        return;
    }
    let im = Images::new();
    im.ok(&["import", image_layout().to_str().unwrap()]);
    let target = im.dir.path().join("mnt");
    let rw = im.dir.path().join("rw");
    im.ok(&["mount", "hull-test:gzip", target.to_str().unwrap(), "--rw-dir", rw.to_str().unwrap()]);
    let ok = std::fs::read_to_string(target.join("etc/hull-release")).ok();
    let listing: Vec<_> = std::fs::read_dir(target.join("opt/data"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    std::fs::write(target.join("scratch"), "w").ok();
    im.ok(&["umount", target.to_str().unwrap()]);
    assert_eq!(ok.as_deref(), Some("layer3\n"));
    assert_eq!(listing, vec![std::ffi::OsString::from("c")]);
    assert!(rw.join("upper/scratch").is_file(), "writes go to the rw dir");
    assert!(!target.join("etc").exists(), "still mounted");
    assert_eq!(im.count("leases"), 0, "lease left");
}
