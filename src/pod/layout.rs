//! Where `hull pod` keeps things: persistent records under the state
//! directory (default `/var/lib/hull`), runtime files under `--root`
//! (default `/run/hull`, a tmpfs), split as the CRI daemon splits its
//! `state_dir` and `run_dir`, and on the same runtime layer code:
//!
//! ```text
//! <state dir>/pod-records/<key>/   pod.json, the stop request, logs/, supervisor.log
//! <state dir>/pod-runtime/         the runtime layer's records (sandboxes, containers, names)
//! <state dir>/pods/<uid>/volumes/  emptyDirs on disk
//! <root>/pod-run/                  the runtime layer's run files (OCI state, exits, netns pins)
//! <root>/pod-run/pods/<key>/       the supervisor lock, the stop FIFO
//! <root>/pod-run/pod-locks/        one lock per pod key, serialising run/stop/rm
//! ```
//!
//! A root and a state directory are used as a pair: each names the other
//! (`<root>/pod-run/state-dir`, `<state dir>/pod-runtime/run-dir`), so a
//! command without `--state-dir` finds the one its root was used with,
//! and a command that mixes up two pairs is refused rather than shown an
//! empty or half world.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::runtime::record::write_bytes_atomic;

/// The state directory when none is given and the root names none.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hull";

/// A `hull pod` world: its state directory and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRoots {
    pub state_dir: PathBuf,
    pub root: PathBuf,
}

impl PodRoots {
    /// The pair for `root`: `state_dir` if given, else the one `root` was
    /// used with, else [`DEFAULT_STATE_DIR`]. Refused when either side is
    /// paired with another, or when `root` holds pods of an older hull,
    /// which kept everything under the root (see [`check_old_layout`]).
    pub fn open(root: &Path, state_dir: Option<&Path>) -> Result<PodRoots> {
        let absolute = |p: &Path| -> Result<PathBuf> {
            Ok(if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().map_err(|e| Error::sys("current directory", e))?.join(p)
            })
        };
        let root = absolute(root)?;
        check_old_layout(&root)?;
        let paired_state = read_pairing(&state_pairing(&root))?;
        let state_dir = match (state_dir, &paired_state) {
            (Some(s), _) => absolute(s)?,
            (None, Some(p)) => p.clone(),
            (None, None) => PathBuf::from(DEFAULT_STATE_DIR),
        };
        // A pairing binds while both sides name each other; one whose
        // other side has moved on (a root deleted, or paired anew) is
        // replaced.
        if let Some(p) = paired_state.as_ref().filter(|p| **p != state_dir) {
            if read_pairing(&root_pairing(p))?.as_deref() == Some(&root) {
                return Err(paired_elsewhere(("--root", &root), ("--state-dir", p), &state_pairing(&root), &state_dir));
            }
        }
        let paired_root = read_pairing(&root_pairing(&state_dir))?;
        if let Some(q) = paired_root.as_ref().filter(|q| **q != root) {
            if read_pairing(&state_pairing(q))?.as_deref() == Some(&state_dir) {
                return Err(paired_elsewhere(("the state directory", &state_dir), ("--root", q), &root_pairing(&state_dir), &root));
            }
        }
        if paired_state.as_ref() != Some(&state_dir) {
            write_pairing(&state_pairing(&root), &state_dir)?;
        }
        if paired_root.as_ref() != Some(&root) {
            write_pairing(&root_pairing(&state_dir), &root)?;
        }
        Ok(PodRoots { state_dir, root })
    }

    /// The pods' records: `<state dir>/pod-records`.
    pub fn records(&self) -> PathBuf {
        self.state_dir.join("pod-records")
    }

    /// The runtime layer's persistent records.
    pub fn runtime_state(&self) -> PathBuf {
        self.state_dir.join("pod-runtime")
    }

    /// The runtime files: the runtime layer's and the pods' own.
    pub fn run(&self) -> PathBuf {
        self.root.join("pod-run")
    }
}

/// The path a pairing file names; None when there is none.
fn read_pairing(file: &Path) -> Result<Option<PathBuf>> {
    match std::fs::read(file) {
        Ok(b) => {
            let text = String::from_utf8(b).map_err(|_| Error::InvalidState(format!("{}: not UTF-8", file.display())))?;
            let p = PathBuf::from(text.trim_end_matches('\n'));
            if !p.is_absolute() {
                return Err(Error::InvalidState(format!("{}: {:?} is not an absolute path", file.display(), p)));
            }
            Ok(Some(p))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::sys(format!("read {}", file.display()), e)),
    }
}

/// "`this` is used with `other` (named in `file`), not `asked`".
fn paired_elsewhere(this: (&str, &Path), other: (&str, &Path), file: &Path, asked: &Path) -> Error {
    Error::InvalidArgument(format!(
        "{} {} is used with {} {} (named in {}), not {}: pass {} {} (or, once no pod of it is left, delete that file)",
        this.0,
        this.1.display(),
        other.0.trim_start_matches('-'),
        other.1.display(),
        file.display(),
        asked.display(),
        other.0,
        other.1.display()
    ))
}

/// The file of a root that names its state directory.
fn state_pairing(root: &Path) -> PathBuf {
    root.join("pod-run/state-dir")
}

/// The file of a state directory that names its root.
fn root_pairing(state_dir: &Path) -> PathBuf {
    state_dir.join("pod-runtime/run-dir")
}

fn write_pairing(file: &Path, value: &Path) -> Result<()> {
    let dir = file.parent().expect("a pairing file has a directory");
    std::fs::create_dir_all(dir).map_err(|e| Error::sys(format!("create {}", dir.display()), e))?;
    let text = value.to_str().ok_or_else(|| Error::InvalidArgument(format!("{}: not UTF-8", value.display())))?;
    write_bytes_atomic(file, format!("{text}\n").as_bytes())?;
    Ok(())
}

/// Refuse a root that holds what an older hull made there: pod records
/// (`<root>/pods/<key>/pod.json`) and the runtime layer's records
/// (`<root>/pod-runtime/{sandboxes,containers}/<id>`). They are not moved
/// into the state directory: the processes of a running pod (supervisor,
/// monitors, holder) have those paths open and keep writing there, so no
/// move is both atomic and safe while they run. Nor are they read as if
/// they were not there: the error names the file and how to remove it.
pub fn check_old_layout(root: &Path) -> Result<()> {
    let entries = |d: PathBuf| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path()).collect();
        v.sort();
        v
    };
    let old_pod = entries(root.join("pods")).into_iter().map(|d| d.join("pod.json")).find(|f| f.exists());
    if let Some(f) = old_pod {
        let key = f.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let (ns, name) = key.split_once('_').unwrap_or(("default", &key));
        return Err(Error::InvalidState(format!(
            "{}: a pod record of an older hull, which kept pods under --root; this hull keeps them under the \
             state directory and does not move a pod whose processes may still run. Remove it with the hull \
             that made it (`hull --root {} pod rm -n {ns} {name}`), or, if nothing of it runs any more, \
             delete {} and {}",
            f.display(),
            root.display(),
            root.join("pods").display(),
            root.join("pod-runtime").display()
        )));
    }
    let old_runtime = ["sandboxes", "containers"].iter().flat_map(|k| entries(root.join("pod-runtime").join(k))).next();
    if let Some(d) = old_runtime {
        return Err(Error::InvalidState(format!(
            "{}: a runtime record of an older hull, which kept pods under --root; this hull keeps them under \
             the state directory and does not move them. Remove its pods with the hull that made them \
             (`hull --root {} pod rm NAME`), or, if nothing of them runs any more, delete {}",
            d.display(),
            root.display(),
            root.join("pod-runtime").display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_remembers_its_state_dir_and_refuses_another() {
        let t = tempfile::tempdir().unwrap();
        let (root, state) = (t.path().join("run"), t.path().join("state"));
        let roots = PodRoots::open(&root, Some(&state)).unwrap();
        assert_eq!(roots, PodRoots { state_dir: state.clone(), root: root.clone() });
        assert_eq!(PodRoots::open(&root, None).unwrap(), roots, "the root names its state dir");
        assert_eq!(PodRoots::open(&root, Some(&state)).unwrap(), roots);
        let e = PodRoots::open(&root, Some(&t.path().join("other"))).unwrap_err().to_string();
        assert!(e.contains("pass --state-dir") && e.contains(state.to_str().unwrap()), "{e}");
        let e = PodRoots::open(&t.path().join("run2"), Some(&state)).unwrap_err().to_string();
        assert!(e.contains("pass --root") && e.contains(root.to_str().unwrap()), "{e}");
        assert!(!t.path().join("other").exists(), "a refused pair writes nothing");
        // A root that is gone (a test's temporary one, a rebooted /run)
        // no longer holds its state directory.
        std::fs::remove_dir_all(&root).unwrap();
        let moved = PodRoots::open(&t.path().join("run2"), Some(&state)).unwrap();
        assert_eq!(PodRoots::open(&t.path().join("run2"), None).unwrap(), moved);
    }

    #[test]
    fn records_of_an_older_hull_are_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("pods/ns_web");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("pod.json"), b"{}").unwrap();
        let e = PodRoots::open(t.path(), Some(&t.path().join("s"))).unwrap_err().to_string();
        assert!(e.contains(old.join("pod.json").to_str().unwrap()) && e.contains("pod rm -n ns web"), "{e}");
        std::fs::remove_dir_all(t.path().join("pods")).unwrap();
        let sb = t.path().join("pod-runtime/sandboxes/0123");
        std::fs::create_dir_all(&sb).unwrap();
        let e = PodRoots::open(t.path(), Some(&t.path().join("s"))).unwrap_err().to_string();
        assert!(e.contains(sb.to_str().unwrap()) && e.contains("older hull"), "{e}");
        std::fs::remove_dir_all(&sb).unwrap();
        PodRoots::open(t.path(), Some(&t.path().join("s"))).unwrap();
    }
}
