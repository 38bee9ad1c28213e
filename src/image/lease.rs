//! Leases: who uses what in the store. A lease (`leases/<name>`, JSON)
//! names its owner, the images it uses and the snapshots it keeps. Prune
//! keeps every lease's snapshots, and `hull image rm` refuses to take away
//! an image a lease uses (containerd's leases keep content in use; the
//! kubelet removes only images no container uses). A mounted rootfs holds
//! one, and so does a pod for its whole life (its containers' images are
//! needed again at every restart, while no container of it may exist).
//! Leases of an older hull are plain lines of snapshot ids.
use std::collections::BTreeSet;
use std::fs;

use serde::{Deserialize, Serialize};

use super::error::{ImageError, IoContext, Result};
use super::store::{temp_name, ImageRecord, Records, Store};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it, as a refused removal names it.
    pub owner: String,
    /// The images it uses, as they were resolved when it was taken.
    #[serde(default)]
    pub images: Vec<ImageRecord>,
    /// The snapshots (chain id hex) prune must keep.
    #[serde(default)]
    pub snapshots: Vec<String>,
}

impl Lease {
    fn parse(text: &str) -> Lease {
        serde_json::from_str(text).unwrap_or_else(|_| Lease {
            owner: "a mounted rootfs".into(),
            images: Vec::new(),
            snapshots: text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect(),
        })
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(ImageError::InvalidArgument(format!("lease name {name:?}")));
    }
    Ok(())
}

impl Store {
    /// Every lease, by name.
    pub fn leases(&self) -> Result<Vec<(String, Lease)>> {
        let dir = self.leases_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let e = e.ctx(|| format!("read {}", dir.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(text) = fs::read_to_string(e.path()) {
                out.push((name, Lease::parse(&text)));
            }
        }
        Ok(out)
    }

    /// Take (or replace) lease `name` for `owner` on these images and
    /// their snapshots. Under the store lock and only while each image
    /// still has its record (else NotFound): a removal either sees the
    /// lease or has gone first.
    pub fn put_lease(&self, name: &str, owner: &str, images: &[ImageRecord]) -> Result<()> {
        check_name(name)?;
        let _lock = self.lock()?;
        let recs = self.records()?;
        let mut snapshots = Vec::new();
        for image in images {
            if recs.images.get(&image.name).is_none_or(|r| r.config != image.config) {
                return Err(ImageError::NotFound(image.name.clone()));
            }
            snapshots.extend(self.chain_ids(image)?.iter().map(|c| c.hex().to_string()));
        }
        let lease = Lease { owner: owner.to_string(), images: images.to_vec(), snapshots };
        let path = self.leases_dir().join(name);
        let tmp = self.leases_dir().join(temp_name(".lease-"));
        let data = serde_json::to_vec_pretty(&lease).map_err(|e| ImageError::json("encode lease", e))?;
        fs::write(&tmp, data).ctx(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &path).ctx(|| format!("rename {}", path.display()))
    }

    /// Give lease `name` back (idempotent).
    pub fn drop_lease(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.leases_dir().join(name);
        // Not there: nothing to write (unlink on a read-only store fails
        // even for a missing name).
        if fs::symlink_metadata(&path).is_err() {
            return Ok(());
        }
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::io(format!("remove {}", path.display()), e)),
            _ => Ok(()),
        }
    }
}

/// The first image that removing `names` from `recs` would take from a
/// lease, with the owners of every lease that uses it: a name a lease
/// uses, or the content of an image a lease uses when no name of it would
/// be left.
pub fn in_use<'a>(leases: &'a [(String, Lease)], recs: &Records, names: &[String]) -> Option<(String, Vec<&'a str>)> {
    let left: BTreeSet<_> = recs.images.values().filter(|r| !names.contains(&r.name)).map(|r| &r.config).collect();
    for name in names {
        let Some(rec) = recs.images.get(name) else { continue };
        let owners: Vec<&str> = leases
            .iter()
            .filter(|(_, l)| l.images.iter().any(|u| u.name == *name || (u.config == rec.config && !left.contains(&rec.config))))
            .map(|(_, l)| l.owner.as_str())
            .collect();
        if !owners.is_empty() {
            return Some((name.clone(), owners));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;

    fn rec(name: &str, config: char) -> ImageRecord {
        let d = |c: char| Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        ImageRecord { name: name.into(), manifest: d(config), config: d(config), index: None, created: String::new() }
    }

    #[test]
    fn a_used_name_or_the_last_name_of_used_content_is_in_use() {
        let mut recs = Records::default();
        for r in [rec("a:1", 'a'), rec("a:2", 'a'), rec("b:1", 'b')] {
            recs.images.insert(r.name.clone(), r);
        }
        let leases = vec![("pod-x".to_string(), Lease { owner: "pod web".into(), images: vec![rec("a:1", 'a')], snapshots: vec![] })];
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(in_use(&leases, &recs, &names(&["a:1"])), Some(("a:1".to_string(), vec!["pod web"])));
        // Another name of the same content goes: the used one stays.
        assert_eq!(in_use(&leases, &recs, &names(&["a:2"])), None);
        assert_eq!(in_use(&leases, &recs, &names(&["b:1"])), None);
        // Every name of it (by id): the content would go.
        assert!(in_use(&leases, &recs, &names(&["a:2", "a:1"])).is_some());
    }

    #[test]
    fn old_leases_are_lines_of_snapshots() {
        assert_eq!(Lease::parse("aa\nbb\n").snapshots, vec!["aa", "bb"]);
        let l = Lease { owner: "o".into(), images: vec![rec("a:1", 'a')], snapshots: vec!["cc".into()] };
        assert_eq!(Lease::parse(&serde_json::to_string(&l).unwrap()), l);
    }
}
