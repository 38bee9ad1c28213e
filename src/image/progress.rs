//! Progress bars for pulls: one per blob (indicatif), drawn on stderr
//! only when it is a terminal.
use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ingest::Progress;

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Bars { multi: MultiProgress::with_draw_target(target), bars: Mutex::new(HashMap::new()) }
    }

    pub fn clear(&self) {
        let _ = self.multi.clear();
    }

    fn bar(&self, id: &str, total: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.entry(id.to_string())
            .or_insert_with(|| {
                let style = if total > 0 {
                    ProgressStyle::with_template("{prefix:>20} [{bar:30}] {bytes:>10}/{total_bytes:<10} {msg}")
                } else {
                    ProgressStyle::with_template("{prefix:>20} {spinner} {msg}")
                };
                let pb = self.multi.add(ProgressBar::new(total));
                if let Ok(style) = style {
                    pb.set_style(style.progress_chars("=> "));
                }
                pb.set_prefix(id.to_string());
                pb
            })
            .clone()
    }
}

impl Progress for Bars {
    fn begin(&self, id: &str, total: u64) {
        self.bar(id, total).set_message(if total > 0 { "downloading" } else { "working" });
    }
    fn advance(&self, id: &str, done: u64) {
        self.bar(id, 0).set_position(done);
    }
    fn finish(&self, id: &str, note: &str) {
        self.bar(id, 0).finish_with_message(note.to_string());
    }
}
