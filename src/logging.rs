//! runc-style logging: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim reads the last `error` line of the log file to explain a
//! failed runtime call, so the JSON shape matches runc's
//! (`{"level":"error","msg":"...","time":"..."}`).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

struct Logger {
    sink: Mutex<Sink>,
    format: LogFormat,
    level: log::LevelFilter,
}

enum Sink {
    Stderr,
    File(File),
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(self.format, record.level(), &record.args().to_string());
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match &mut *sink {
            Sink::Stderr => std::io::stderr().write_all(line.as_bytes()),
            Sink::File(f) => f.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// One log line, newline-terminated, in the chosen format.
pub fn format_line(format: LogFormat, level: log::Level, msg: &str) -> String {
    let time = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({"level": level_name(level), "msg": msg, "time": time});
            format!("{v}\n")
        }
        LogFormat::Text => format!("time={:?} level={} msg={:?}\n", time, level_name(level), msg),
    }
}

/// Print one log line on stderr, whatever the logger's sink (for a fatal
/// error, printed the way runc prints one).
pub fn eprint_line(format: LogFormat, level: log::Level, msg: &str) {
    let _ = std::io::stderr().write_all(format_line(format, level, msg).as_bytes());
}

/// Install the process-wide logger. Without a log file, warnings and errors
/// go to stderr (errors are printed by the CLI itself, so only warnings).
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let sink = match path {
        Some(p) => Sink::File(OpenOptions::new().create(true).append(true).open(p)?),
        None => Sink::Stderr,
    };
    let level = if debug { log::LevelFilter::Debug } else { log::LevelFilter::Warn };
    let logger = Logger { sink: Mutex::new(sink), format, level };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_runc_fields() {
        let line = format_line(LogFormat::Json, log::Level::Error, "boom \"x\"");
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_line_quotes_message() {
        let line = format_line(LogFormat::Text, log::Level::Warn, "a b");
        assert!(line.contains("level=warning msg=\"a b\""), "{line}");
    }
}
