//! `events`: stats every interval and OOM notifications, as JSON lines in
//! runc's format, until the container stops; or the stats once (`--stats`).
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::state::{StateRoot, Status};
use crate::cgroups::notify::OomWatcher;
use crate::cgroups::stats::Stats;
use crate::error::{Error, Result};

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    typ: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Stats>,
}

fn emit(out: &mut dyn Write, ev: &Event) -> Result<()> {
    let line = serde_json::to_string(ev).map_err(|e| Error::InvalidState(e.to_string()))?;
    writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| Error::sys("write event", e))
}

/// Print events for container `id` to `out`. With `stats_only`, one stats
/// event and return; otherwise stats every `interval` and an "oom" event per
/// OOM notification, until the container stops.
pub fn events(root: &StateRoot, id: &str, stats_only: bool, interval: Duration, out: &mut dyn Write) -> Result<()> {
    let rec = root.load(id)?;
    if rec.status(root) == Status::Stopped {
        return Err(Error::InvalidState(format!("container {id} is not running")));
    }
    let cg = rec.cgroup.as_ref().ok_or_else(|| Error::Cgroup("container has no cgroup".into()))?;
    if stats_only {
        return emit(out, &Event { typ: "stats", id, data: Some(&cg.stats()) });
    }
    if interval.is_zero() {
        return Err(Error::InvalidArgument("--interval must be greater than zero".into()));
    }
    let mut watcher = match OomWatcher::new(cg) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("no OOM notifications for {id}: {e}");
            None
        }
    };
    // Short waits so that a stopped container ends the loop promptly.
    let step = Duration::from_millis(100);
    let mut next_stats = Instant::now() + interval;
    loop {
        let stopped = rec.status(root) == Status::Stopped;
        let wait = if stopped { Duration::ZERO } else { step.min(next_stats.saturating_duration_since(Instant::now())) };
        let ooms = match &mut watcher {
            Some(w) => w.wait(wait)?,
            None => {
                std::thread::sleep(wait);
                0
            }
        };
        for _ in 0..ooms {
            emit(out, &Event { typ: "oom", id, data: None })?;
        }
        if stopped {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            emit(out, &Event { typ: "stats", id, data: Some(&cg.stats()) })?;
            next_stats += interval;
        }
    }
}

/// A Go-style duration as runc takes it: "5s", "500ms", "1m", "1.5s".
pub fn parse_interval(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("soon").is_err());
    }

    #[test]
    fn oom_event_has_no_data() {
        let mut buf = Vec::new();
        emit(&mut buf, &Event { typ: "oom", id: "x", data: None }).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "{\"type\":\"oom\",\"id\":\"x\"}\n");
    }
}
