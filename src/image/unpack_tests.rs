//! Layer unpacking: whiteouts, metadata, and hostile layers built in
//! memory (the host directory next to the snapshot must stay untouched).
//! Run as root (chown, mknod and trusted.* xattrs need it); skipped otherwise.
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: layer unpacking tests need root (chown, mknod, trusted.* xattrs)");
    false
}

/// An entry with a raw name, as a hostile producer would write it (the tar
/// crate's builder refuses `..` and absolute names).
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tarball(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

struct Env {
    _t: tempfile::TempDir,
    snap: PathBuf,
    host: PathBuf,
}

fn env() -> Env {
    let t = tempfile::tempdir().unwrap();
    let snap = t.path().join("snap");
    let host = t.path().join("host");
    std::fs::create_dir(&snap).unwrap();
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), b"host data").unwrap();
    Env { snap, host, _t: t }
}

fn host_untouched(e: &Env) {
    let names: Vec<_> = std::fs::read_dir(&e.host).unwrap().map(|d| d.unwrap().file_name()).collect();
    assert_eq!(names, vec![OsString::from("secret")], "host dir changed");
    assert_eq!(std::fs::read(e.host.join("secret")).unwrap(), b"host data");
    assert_eq!(std::fs::metadata(e.host.join("secret")).unwrap().nlink(), 1);
}

use tar::EntryType as T;

#[test]
fn regular_layer_with_metadata() {
    if !is_root() {
        return;
    }
    let e = env();
    let data = tarball(|b| {
        raw(b, "./", T::Directory, None, b"");
        raw(b, "bin/", T::Directory, None, b"");
        let mut h = tar::Header::new_gnu();
        h.set_path("bin/tool").unwrap();
        h.set_size(5);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(100);
        h.set_mtime(1_500_000_000);
        h.set_entry_type(T::Regular);
        h.set_cksum();
        b.append(&h, &b"tool!"[..]).unwrap();
        raw(b, "bin/sh", T::Symlink, Some("tool"), b"");
        raw(b, "bin/tool2", T::Link, Some("bin/tool"), b"");
        raw(b, "dev/null", T::Char, None, b"");
        raw(b, "deep/er/file", T::Regular, None, b"x");
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    let gz = gz.finish().unwrap();
    let diff = unpack_layer(&gz[..], &e.snap, &[], "layer-a").unwrap();
    assert_eq!(diff, Digest::of(&data), "diff id is the digest of the uncompressed tar");
    let md = std::fs::metadata(e.snap.join("bin/tool")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777, md.mtime()), (1000, 100, 0o4755, 1_500_000_000));
    assert_eq!(std::fs::read_link(e.snap.join("bin/sh")).unwrap(), PathBuf::from("tool"));
    assert_eq!(std::fs::metadata(e.snap.join("bin/tool2")).unwrap().ino(), md.ino());
    assert!(std::fs::symlink_metadata(e.snap.join("dev/null")).unwrap().file_type().is_char_device());
    assert_eq!(std::fs::metadata(e.snap.join("bin")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(std::fs::metadata(e.snap.join("deep/er")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read(e.snap.join("deep/er/file")).unwrap(), b"x");
}

#[test]
fn zstd_and_whiteouts() {
    if !is_root() {
        return;
    }
    let e = env();
    let lower = e.snap.with_file_name("lower");
    std::fs::create_dir_all(lower.join("etc")).unwrap();
    std::fs::set_permissions(lower.join("etc"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let data = tarball(|b| {
        raw(b, "etc/.wh.motd", T::Regular, None, b"");
        raw(b, "var/cache/.wh..wh..opq", T::Regular, None, b"");
        raw(b, "var/cache/new", T::Regular, None, b"n");
    });
    let z = zstd::encode_all(&data[..], 1).unwrap();
    assert_eq!(detect(&z), Compression::Zstd);
    unpack_layer(&z[..], &e.snap, &[lower], "layer-b").unwrap();
    let wh = std::fs::symlink_metadata(e.snap.join("etc/motd")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0/0 char device");
    assert_eq!(std::fs::metadata(e.snap.join("etc")).unwrap().mode() & 0o7777, 0o750, "implicit dir copies the lower's mode");
    let f = File::open(e.snap.join("var/cache")).unwrap();
    use xattr::FileExt;
    assert_eq!(f.get_xattr(OPAQUE_XATTR).unwrap().as_deref(), Some(&b"y"[..]));
    assert!(e.snap.join("var/cache/new").is_file());
    assert!(!e.snap.join("var/cache/.wh..wh..opq").exists());
}

fn refused(e: &Env, data: Vec<u8>) -> ImageError {
    let err = unpack_layer(&data[..], &e.snap, &[], "hostile").unwrap_err();
    host_untouched(e);
    err
}

#[test]
fn dotdot_and_absolute_names_are_refused() {
    if !is_root() {
        return;
    }
    let e = env();
    let up = "../host/pwned";
    let err = refused(&e, tarball(|b| raw(b, up, T::Regular, None, b"x")));
    assert!(matches!(err, ImageError::HostileLayer { .. }), "{err}");
    let abs = format!("{}/pwned", e.host.display());
    let err = refused(&e, tarball(|b| raw(b, &abs, T::Regular, None, b"x")));
    assert!(err.to_string().contains("absolute"), "{err}");
    let err = refused(&e, tarball(|b| raw(b, "a/../../host/pwned", T::Regular, None, b"x")));
    assert!(matches!(err, ImageError::HostileLayer { .. }), "{err}");
}

#[test]
fn symlink_then_write_through_stays_inside() {
    if !is_root() {
        return;
    }
    let e = env();
    let secret = format!("{}/secret", e.host.display());
    let data = tarball(|b| {
        // A relative symlink climbing out: resolved in the root, it is the root.
        raw(b, "up", T::Symlink, Some("../../../../../../.."), b"");
        raw(b, "up/pwned2", T::Regular, None, b"x");
        // A file symlink, then a regular file of the same name: replaced, not written through.
        raw(b, "f", T::Symlink, Some(&secret), b"");
        raw(b, "f", T::Regular, None, b"overwritten?");
        // Hard link to a symlink that points at a host file: links the symlink.
        raw(b, "s", T::Symlink, Some(&secret), b"");
        raw(b, "h", T::Link, Some("s"), b"");
        // Whiteout of a symlink to the host: removes the symlink only.
        raw(b, "s2", T::Symlink, Some(&secret), b"");
        raw(b, ".wh.s2", T::Regular, None, b"");
    });
    unpack_layer(&data[..], &e.snap, &[], "hostile").unwrap();
    host_untouched(&e);
    assert!(e.snap.join("pwned2").is_file());
    assert_eq!(std::fs::read(e.snap.join("f")).unwrap(), b"overwritten?");
    assert!(std::fs::symlink_metadata(e.snap.join("h")).unwrap().file_type().is_symlink());
    assert!(std::fs::symlink_metadata(e.snap.join("s2")).unwrap().file_type().is_char_device());

    // Through a directory symlink to an absolute host path: it dangles
    // inside the root, so every kind of entry below it is refused.
    let host = e.host.display().to_string();
    for (name, kind) in [
        ("evil/pwned", T::Regular),
        ("evil/.wh.secret", T::Regular),
        ("evil/.wh..wh..opq", T::Regular),
        ("evil/dir/", T::Directory),
        ("evil/fifo", T::Fifo),
        ("evil/ln", T::Symlink),
    ] {
        let e = env();
        let err = refused(
            &e,
            tarball(|b| {
                raw(b, "evil", T::Symlink, Some(&host), b"");
                raw(b, name, kind, Some("/x"), b"");
            }),
        );
        assert!(matches!(err, ImageError::HostileLayer { .. }), "{name}: {err}");
    }
}

#[test]
fn hard_links_outside_are_refused() {
    if !is_root() {
        return;
    }
    let e = env();
    let err = refused(&e, tarball(|b| raw(b, "h", T::Link, Some("../host/secret"), b"")));
    assert!(matches!(err, ImageError::HostileLayer { .. }), "{err}");
    // An absolute target is the layer's root: there is no such file there.
    let abs = format!("{}/secret", e.host.display());
    let err = refused(&e, tarball(|b| raw(b, "h2", T::Link, Some(&abs), b"")));
    assert!(matches!(err, ImageError::HostileLayer { .. }), "{err}");
    // Through a directory symlink to the host: resolved inside, so not found.
    let host = e.host.display().to_string();
    let err = refused(
        &e,
        tarball(|b| {
            raw(b, "d", T::Symlink, Some(&host), b"");
            raw(b, "h3", T::Link, Some("d/secret"), b"");
        }),
    );
    assert!(matches!(err, ImageError::HostileLayer { .. }), "{err}");
}

#[test]
fn overlay_xattrs_in_layers_are_refused() {
    if !is_root() {
        return;
    }
    let e = env();
    let data = tarball(|b| {
        let mut h = tar::Header::new_ustar();
        h.set_path("d").unwrap();
        h.set_entry_type(T::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])]).unwrap();
        b.append(&h, &[][..]).unwrap();
    });
    let err = refused(&e, data);
    assert!(err.to_string().contains("overlay"), "{err}");
}

#[test]
fn lower_symlinks_are_not_followed_to_the_host() {
    if !is_root() {
        return;
    }
    let e = env();
    std::fs::set_permissions(&e.host, std::fs::Permissions::from_mode(0o751)).unwrap();
    let lower = e.snap.with_file_name("lower");
    std::fs::create_dir_all(&lower).unwrap();
    std::os::unix::fs::symlink(&e.host, lower.join("x")).unwrap();
    let data = tarball(|b| raw(b, "x/f", T::Regular, None, b"1"));
    unpack_layer(&data[..], &e.snap, &[lower], "layer-c").unwrap();
    // The implicit directory did not take the host directory's attributes.
    assert_eq!(std::fs::metadata(e.snap.join("x")).unwrap().mode() & 0o7777, 0o755);
    host_untouched(&e);
}
