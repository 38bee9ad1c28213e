//! The name index: `namespace/name/attempt` → sandbox id and
//! `sandbox/name/attempt` → container id, one small file per name under
//! `<state dir>/names/`. A name is reserved by linking a complete file into
//! place (link(2) fails if the name exists), so two creators of one name
//! cannot both win, and the loser is told which id holds it.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::error::{ErrorKind, Result, RuntimeError};

/// What kind of object a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sandbox,
    Container,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandboxes",
            Kind::Container => "containers",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::Container => "container",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    id: String,
}

pub struct NameIndex {
    dir: PathBuf,
}

/// The key of a sandbox name.
pub fn sandbox_key(namespace: &str, name: &str, attempt: u32) -> String {
    format!("{namespace}/{name}/{attempt}")
}

/// The key of a container name within its sandbox.
pub fn container_key(sandbox: &str, name: &str, attempt: u32) -> String {
    format!("{sandbox}/{name}/{attempt}")
}

impl NameIndex {
    pub fn new(state_dir: &Path) -> NameIndex {
        NameIndex { dir: state_dir.join("names") }
    }

    /// Keys may hold any characters: the file is named by their digest.
    fn path(&self, kind: Kind, key: &str) -> PathBuf {
        self.dir.join(kind.dir()).join(format!("{:x}", sha2::Sha256::digest(key.as_bytes())))
    }

    fn io(what: String, e: std::io::Error) -> RuntimeError {
        RuntimeError::with_source(ErrorKind::Internal, what, e)
    }

    /// Reserve `key` for `id`. `exists(holder)` says whether the id holding
    /// a name still has a record: an entry whose holder is gone (a crash
    /// between reserving and recording) is taken over.
    pub fn reserve(&self, kind: Kind, key: &str, id: &str, exists: impl Fn(&str) -> bool) -> Result<()> {
        let path = self.path(kind, key);
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| Self::io(format!("create {}", dir.display()), e))?;
        let tmp = dir.join(format!(".{id}.tmp"));
        // Not synced (two fsyncs less per create): the link below is not
        // either, and an entry a power loss takes or tears is one the next
        // reserve takes over as stale (it names no holder); nothing runs
        // after a power loss to hold a name.
        super::record::write_run_file(&tmp, &Entry { key: key.to_string(), id: id.to_string() })?;
        let result = loop {
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => break Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match self.holder_at(&path) {
                        Some(holder) if holder == id => break Ok(()),
                        Some(holder) if exists(&holder) => {
                            break Err(RuntimeError::new(
                                ErrorKind::AlreadyExists,
                                format!("{} name {key:?} is already taken by {} {holder}", kind.noun(), kind.noun()),
                            ))
                        }
                        // Stale (or vanished meanwhile): drop it, try again.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => break Err(Self::io(format!("reserve name {key:?}"), e)),
            }
        };
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn holder_at(&self, path: &Path) -> Option<String> {
        let e: Entry = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        Some(e.id)
    }

    /// The id holding `key`, if any.
    pub fn lookup(&self, kind: Kind, key: &str) -> Option<String> {
        self.holder_at(&self.path(kind, key))
    }

    /// Remove the temp files of reservations whose creator died before
    /// finishing them (`.ID.tmp` and its own write's temp files): those of
    /// an id `alive` says has no object any more. A live creator's id has
    /// its object directory from before it reserves.
    pub fn sweep_temps(&self, kind: Kind, alive: impl Fn(&str) -> bool) {
        for e in std::fs::read_dir(self.dir.join(kind.dir())).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') {
                continue;
            }
            let id = name.trim_start_matches('.').split('.').next().unwrap_or("");
            if !id.is_empty() && !alive(id) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Give a name back, only if `id` holds it.
    pub fn release(&self, kind: Kind, key: &str, id: &str) {
        let path = self.path(kind, key);
        if self.holder_at(&path).as_deref() == Some(id) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let idx = NameIndex::new(dir.path());
        let key = sandbox_key("default", "a", 0);
        idx.reserve(Kind::Sandbox, &key, "id1", |_| true).unwrap();
        let e = idx.reserve(Kind::Sandbox, &key, "id2", |_| true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("id1") && e.to_string().contains("default/a/0"), "{e}");
        // Reserving again for the holder is fine; other keys are separate.
        idx.reserve(Kind::Sandbox, &key, "id1", |_| true).unwrap();
        idx.reserve(Kind::Sandbox, &sandbox_key("default", "a", 1), "id3", |_| true).unwrap();
        idx.reserve(Kind::Sandbox, &sandbox_key("other", "a", 0), "id4", |_| true).unwrap();
        idx.reserve(Kind::Container, &key, "c1", |_| true).unwrap();
        assert_eq!(idx.lookup(Kind::Sandbox, &key).as_deref(), Some("id1"));
        // Only the holder releases.
        idx.release(Kind::Sandbox, &key, "id2");
        assert_eq!(idx.lookup(Kind::Sandbox, &key).as_deref(), Some("id1"));
        idx.release(Kind::Sandbox, &key, "id1");
        assert_eq!(idx.lookup(Kind::Sandbox, &key), None);
        idx.reserve(Kind::Sandbox, &key, "id2", |_| true).unwrap();
    }

    #[test]
    fn a_name_of_a_vanished_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let idx = NameIndex::new(dir.path());
        idx.reserve(Kind::Sandbox, "ns/x/0", "dead", |_| true).unwrap();
        idx.reserve(Kind::Sandbox, "ns/x/0", "new", |h| h != "dead").unwrap();
        assert_eq!(idx.lookup(Kind::Sandbox, "ns/x/0").as_deref(), Some("new"));
    }

    #[test]
    fn temp_files_of_dead_creators_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let idx = NameIndex::new(dir.path());
        idx.reserve(Kind::Sandbox, "ns/x/0", "live", |_| true).unwrap();
        let names = dir.path().join("names/sandboxes");
        for f in [".dead.tmp", "..dead.tmp.77-0.tmp", ".live.tmp", "..live.tmp.78-1.tmp"] {
            std::fs::write(names.join(f), "").unwrap();
        }
        idx.sweep_temps(Kind::Sandbox, |id| id == "live");
        let mut left: Vec<String> = std::fs::read_dir(&names)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left.iter().all(|n| !n.contains("dead")), "{left:?}");
        assert_eq!(idx.lookup(Kind::Sandbox, "ns/x/0").as_deref(), Some("live"));
    }

    #[test]
    fn one_of_many_concurrent_reservations_wins() {
        let dir = tempfile::tempdir().unwrap();
        let wins: usize = (0..8)
            .map(|i| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || NameIndex::new(&d).reserve(Kind::Sandbox, "ns/race/0", &format!("id{i}"), |_| true).is_ok())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
    }
}
