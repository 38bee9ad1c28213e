//! Events and exits. Monitors write each container's exit record into one
//! directory (`<run dir>/exits/<id>.json`, by rename); a watcher thread
//! sees them with inotify, brings the container's record up to date and
//! publishes a Stopped event. Waiting for one exit ([`wait_exit`]) uses its
//! own inotify watch, so no one polls.
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::error::{ErrorKind, Result, RuntimeError};
use super::id::{ContainerId, SandboxId};
use super::status::{Event, EventKind};
use crate::monitor::exit::ExitRecord;

/// How many events a subscriber may have unread before it is dropped.
pub const QUEUE: usize = 4096;

#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<SyncSender<Event>>>,
}

impl EventBus {
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<Event> {
        let (tx, rx) = sync_channel(QUEUE);
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    pub fn publish(&self, kind: EventKind, sandbox_id: &SandboxId, container_id: Option<&ContainerId>) {
        let ev = Event { kind, sandbox_id: sandbox_id.clone(), container_id: container_id.cloned(), at: SystemTime::now() };
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| match tx.try_send(ev.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!("an event subscriber fell {QUEUE} events behind: dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// The exit record file of a container.
pub fn exit_path(exits_dir: &Path, id: &ContainerId) -> PathBuf {
    exits_dir.join(format!("{id}.json"))
}

fn inotify_on(dir: &Path) -> Result<Inotify> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, "inotify_init", std::io::Error::from(e)))?;
    ino.add_watch(dir, AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE)
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("watch {}", dir.display()), std::io::Error::from(e)))?;
    Ok(ino)
}

/// An inotify watch on the exit records' directory, for a caller that
/// waits on it together with other things (a pod supervisor's poll).
pub fn exit_watch(exits_dir: &Path) -> Result<Inotify> {
    inotify_on(exits_dir)
}

/// Wait until the container's exit record exists or `limit` passes.
pub fn wait_exit(exits_dir: &Path, id: &ContainerId, limit: Duration) -> Result<Option<ExitRecord>> {
    let path = exit_path(exits_dir, id);
    // Watch first, then look: an exit between the two is still seen.
    let ino = inotify_on(exits_dir)?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(exit) = ExitRecord::load(&path) {
            return Ok(Some(exit));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(RuntimeError::with_source(ErrorKind::Internal, "poll inotify", std::io::Error::from(e))),
        }
        // Drain; what changed is checked by loading the file again.
        while let Ok(evs) = ino.read_events() {
            if evs.is_empty() {
                break;
            }
        }
    }
}

/// The watcher thread's handle: stops the thread when dropped.
pub struct Watcher {
    /// The write end of the thread's stop pipe: closing it wakes the
    /// thread's poll (POLLHUP on the read end), which then ends.
    stop: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watch `exits_dir`; call `on_exit` with each container id whose exit
/// record appears.
pub fn watch(exits_dir: &Path, on_exit: impl Fn(ContainerId) + Send + 'static) -> Result<Watcher> {
    let ino = inotify_on(exits_dir)?;
    let (stop_rx, stop_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, "make the exit watcher's stop pipe", std::io::Error::from(e)))?;
    let thread = std::thread::Builder::new()
        .name("hull-exits".into())
        .spawn(move || loop {
            let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN), PollFd::new(stop_rx.as_fd(), PollFlags::POLLIN)];
            // No timeout: an exit record or the stop pipe's closing wakes it.
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    log::warn!("the exit watcher stops: poll: {e}");
                    return;
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                return;
            }
            while let Ok(evs) = ino.read_events() {
                if evs.is_empty() {
                    break;
                }
                for ev in evs {
                    let name = ev.name.as_ref().and_then(|n| n.to_str()).unwrap_or("");
                    if let Some(id) = name.strip_suffix(".json").and_then(|s| ContainerId::parse(s).ok()) {
                        on_exit(id);
                    }
                }
            }
        })
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, "start the exit watcher", e))?;
    Ok(Watcher { stop: Some(stop_tx), thread: Some(thread) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_seen_by_waiters_and_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let id = ContainerId::generate().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let _w = watch(dir.path(), move |id| tx.send(id).unwrap()).unwrap();
        assert_eq!(wait_exit(dir.path(), &id, Duration::from_millis(50)).unwrap(), None);
        let (d, i) = (dir.path().to_path_buf(), id.clone());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let rec = ExitRecord::from_status(nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(1), 3), "t".into(), false);
            rec.save(&exit_path(&d, &i)).unwrap();
        });
        let exit = wait_exit(dir.path(), &id, Duration::from_secs(10)).unwrap().expect("exit seen");
        assert_eq!(exit.exit_code, 3);
        writer.join().unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), id);
    }

    #[test]
    fn a_dropped_watcher_ends_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<ContainerId>();
        let w = watch(dir.path(), move |id| tx.send(id).unwrap()).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Dropped on a thread of its own: a thread that never woke would
        // hang the drop (its join), not this test.
        std::thread::spawn(move || {
            drop(w);
            done_tx.send(()).unwrap();
        });
        done_rx.recv_timeout(Duration::from_secs(60)).expect("the watcher's thread ended");
        // The thread's closure (and so its sender) went with it.
        assert!(matches!(rx.recv_timeout(Duration::from_secs(10)), Err(std::sync::mpsc::RecvTimeoutError::Disconnected)));
    }

    #[test]
    fn subscribers_get_events_and_gone_ones_are_dropped() {
        let bus = EventBus::default();
        let rx = bus.subscribe();
        let gone = bus.subscribe();
        drop(gone);
        let sb = SandboxId::generate().unwrap();
        bus.publish(EventKind::Created, &sb, None);
        let ev = rx.try_recv().unwrap();
        assert_eq!((ev.kind, ev.sandbox_id, ev.container_id), (EventKind::Created, sb, None));
        assert_eq!(bus.subscribers.lock().unwrap().len(), 1);
    }
}
