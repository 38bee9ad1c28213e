//! What wakes a pod supervisor: a stop call, a container's exit, a
//! process of a container going away, or the next timer (a probe, a
//! restart, a volume check). The supervisor sleeps in one poll over them
//! instead of looking every 100 ms.
//!
//! A stop is asked in two steps: `pod stop` writes the durable stop
//! request (a file a supervisor started later still finds) and then writes
//! a byte into the pod's stop FIFO, which the running supervisor holds open
//! and polls. The supervisor opens the FIFO before it reads the request,
//! so a request is either seen at start or wakes it: none is missed, and
//! the file is never polled.
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::Inotify;

use crate::error::{Error, Result, SysContext};

/// How long to wait between looks where no event can be had: pidfd_open
/// is missing (Linux < 5.3), so a container's processes are not watched.
const WITHOUT_PIDFDS: Duration = Duration::from_millis(500);

pub struct Wakeups {
    fifo: File,
    exits: Inotify,
    pidfds: bool,
}

/// Make the pod's stop FIFO if it is not there (mode 0600).
fn make_fifo(path: &Path) -> Result<()> {
    match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(Error::sys(format!("make the stop FIFO {}", path.display()), e)),
    }
}

impl Wakeups {
    /// Listen on the stop FIFO at `fifo` and watch `exits_dir` (the
    /// runtime's exit records).
    pub fn open(fifo: &Path, exits_dir: &Path) -> Result<Wakeups> {
        make_fifo(fifo)?;
        // Read and write: the FIFO never reads EOF when a writer closes,
        // and opening does not wait for a writer.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fifo)
            .sys_context(|| format!("open the stop FIFO {}", fifo.display()))?;
        let exits = crate::runtime::events::exit_watch(exits_dir).map_err(Error::from)?;
        let pidfds = crate::linux::syscall::pidfd_open(std::process::id() as i32).is_some();
        Ok(Wakeups { fifo: file, exits, pidfds })
    }

    /// Whether processes can be watched (pidfds); without, [`Wakeups::wait`]
    /// looks again every half second.
    pub fn watches_processes(&self) -> bool {
        self.pidfds
    }

    /// Sleep until something happens or `until` (None: no timer). `procs`
    /// are pidfds of the processes whose end must wake the supervisor.
    /// Returns true when a stop call came (the caller then reads the
    /// durable request: it is the truth).
    pub fn wait(&mut self, procs: &[OwnedFd], until: Option<Instant>) -> bool {
        let mut until = until;
        if !self.pidfds {
            let soon = Instant::now() + WITHOUT_PIDFDS;
            until = Some(until.map_or(soon, |u| u.min(soon)));
        }
        let timeout = match until {
            None => PollTimeout::NONE,
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                // Round up: waking a little early would only come back here.
                PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(self.fifo.as_fd(), PollFlags::POLLIN), PollFd::new(self.exits.as_fd(), PollFlags::POLLIN)];
        fds.extend(procs.iter().map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN)));
        // EINTR and errors: return, the caller looks at everything anyway.
        let _ = poll(&mut fds, timeout);
        let stop = fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let mut buf = [0u8; 64];
        while matches!(self.fifo.read(&mut buf), Ok(n) if n > 0) {}
        while let Ok(evs) = self.exits.read_events() {
            if evs.is_empty() {
                break;
            }
        }
        stop
    }
}

/// Wake the supervisor listening on `fifo`, if one is. Not an error when
/// none is (no FIFO, or no reader: the supervisor is gone or not yet
/// listening, and reads the durable request when it starts).
pub fn call_stop(fifo: &Path) -> Result<()> {
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(fifo);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENXIO)) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("open the stop FIFO {}", fifo.display()), e)),
    };
    use std::io::Write;
    match f.write(b"s") {
        // A full pipe (EAGAIN) already holds a wake-up.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(Error::sys(format!("write the stop FIFO {}", fifo.display()), e)),
    }
}

/// A pod record's directory watched for the record's writes (each a
/// rename into it), and optionally a process whose end matters too: what
/// `pod run` sleeps on while it waits for the supervisor to start the
/// containers, and (with the log's and the exit records' directories
/// added) what `pod logs -f` sleeps on.
pub struct RecordWatch {
    dir: Inotify,
    process: Option<OwnedFd>,
    gone: bool,
}

impl RecordWatch {
    /// Watch `dir` (and process `pid`, which must be the caller's child or
    /// otherwise known to be the process meant).
    pub fn open(dir: &Path, pid: Option<i32>) -> Result<RecordWatch> {
        let ino = crate::runtime::events::exit_watch(dir).map_err(Error::from)?;
        Ok(RecordWatch { dir: ino, process: pid.and_then(crate::linux::syscall::pidfd_open), gone: false })
    }

    /// Also wake on files made, written or renamed in `dir`. False when
    /// it cannot be watched (it does not exist yet).
    pub fn add_dir(&mut self, dir: &Path) -> bool {
        use nix::sys::inotify::AddWatchFlags as F;
        self.dir.add_watch(dir, F::IN_MOVED_TO | F::IN_CLOSE_WRITE | F::IN_MODIFY | F::IN_CREATE).is_ok()
    }

    /// Watch process `pid` instead of the one watched so far (None: none).
    pub fn watch_process(&mut self, pid: Option<i32>) {
        self.process = pid.and_then(crate::linux::syscall::pidfd_open);
        self.gone = false;
    }

    /// Whether the process was seen to end.
    pub fn process_gone(&self) -> bool {
        self.gone
    }

    /// Sleep until a file is renamed or written into the directory, the
    /// process ends, or `deadline`.
    pub fn wait(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(self.dir.as_fd(), PollFlags::POLLIN)];
        fds.extend(self.process.iter().map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN)));
        // EINTR and errors: return, the caller looks at the record anyway.
        let _ = poll(&mut fds, timeout);
        self.gone |= fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        while let Ok(evs) = self.dir.read_events() {
            if evs.is_empty() {
                break;
            }
        }
    }
}

/// Wait (bounded) until process `pid` has ended, with a pidfd where the
/// kernel has them. The caller has checked that `pid` is the process it
/// means.
pub fn wait_process_gone(pid: i32, limit: Duration) {
    let Some(fd) = crate::linux::syscall::pidfd_open(pid) else {
        crate::oci::wait::wait_gone(pid, limit);
        return;
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_call_and_an_exit_record_wake_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stop.fifo");
        let exits = dir.path().join("exits");
        std::fs::create_dir(&exits).unwrap();
        // No listener yet: a call is no error, and leaves nothing to read.
        call_stop(&fifo).unwrap();
        let mut w = Wakeups::open(&fifo, &exits).unwrap();
        // A timer only.
        let t = Instant::now();
        assert!(!w.wait(&[], Some(Instant::now() + Duration::from_millis(30))));
        assert!(t.elapsed() >= Duration::from_millis(30));
        // A stop call, from another thread while waiting with no timer.
        let f = fifo.clone();
        let caller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            call_stop(&f).unwrap();
        });
        assert!(w.wait(&[], None));
        caller.join().unwrap();
        // Calls made before the wait: one wake-up.
        call_stop(&fifo).unwrap();
        call_stop(&fifo).unwrap();
        assert!(w.wait(&[], None));
        // All drained: the next wait is woken by an exit record.
        let e = exits.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(e.join("x.json"), "{}").unwrap();
        });
        assert!(!w.wait(&[], None));
        writer.join().unwrap();
    }

    #[test]
    fn a_record_write_and_a_process_end_wake_the_record_watch() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let mut w = RecordWatch::open(dir.path(), Some(child.id() as i32)).unwrap();
        let far = Instant::now() + Duration::from_secs(600);
        let d = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            crate::runtime::record::write_bytes_atomic(&d.join("pod.json"), b"{}").unwrap();
        });
        // Woken by the write (the 600 s deadline would fail the test run).
        w.wait(far);
        writer.join().unwrap();
        assert!(!w.process_gone());
        // An added directory: a write into it wakes the watch too.
        let logs = dir.path().join("logs");
        assert!(!w.add_dir(&logs), "not there yet");
        std::fs::create_dir(&logs).unwrap();
        assert!(w.add_dir(&logs));
        let l = logs.clone();
        let appender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(l.join("0.log"), b"line\n").unwrap();
        });
        w.wait(far);
        appender.join().unwrap();
        if w.process.is_none() {
            eprintln!("skipped the process part: no pidfd_open");
        } else {
            child.kill().unwrap();
            while !w.process_gone() {
                w.wait(far);
            }
        }
        let _ = child.kill();
        child.wait().unwrap();
    }

    #[test]
    fn a_process_end_wakes_the_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let exits = dir.path().join("exits");
        std::fs::create_dir(&exits).unwrap();
        let mut w = Wakeups::open(&dir.path().join("fifo"), &exits).unwrap();
        let mut child = std::process::Command::new("sleep").arg("0.1").spawn().unwrap();
        let Some(fd) = crate::linux::syscall::pidfd_open(child.id() as i32) else {
            eprintln!("skipped: no pidfd_open");
            child.wait().unwrap();
            return;
        };
        let t = Instant::now();
        assert!(!w.wait(&[fd], Some(Instant::now() + Duration::from_secs(60))));
        assert!(t.elapsed() < Duration::from_secs(50), "woken by the timer, not the process end");
        child.wait().unwrap();
    }
}
