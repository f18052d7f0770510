//! A progress bar for staged work (export, validate, import), on stderr,
//! only when stderr is a terminal and output is for people.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use kontextual_app::Progress;

use crate::commands::Ctx;

/// Shows each stage in turn: a byte bar when the stage's size is known,
/// a spinner otherwise. Cleared when dropped, so summaries print clean.
pub struct StageBar {
    shown: bool,
    current: Mutex<Option<ProgressBar>>,
}

impl StageBar {
    pub fn new(ctx: &Ctx) -> StageBar {
        StageBar {
            shown: !ctx.out.quiet && !ctx.out.json && std::io::stderr().is_terminal(),
            current: Mutex::new(None),
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<ProgressBar>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Progress for StageBar {
    fn stage(&self, name: &str, total: Option<u64>) {
        if !self.shown {
            return;
        }
        let style = match total {
            Some(_) => ProgressStyle::with_template(
                "{spinner} {msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => ProgressStyle::with_template("{spinner} {msg} {elapsed}"),
        }
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        // a bar of its own per stage: its counters and clock start at zero
        let pb = ProgressBar::new(total.unwrap_or(0))
            .with_style(style)
            .with_message(name.to_owned());
        pb.enable_steady_tick(Duration::from_millis(120));
        if let Some(old) = self.current().replace(pb) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(pb) = self.current().as_ref() {
            pb.inc(bytes);
        }
    }
}

impl Drop for StageBar {
    fn drop(&mut self) {
        if let Some(pb) = self.current().take() {
            pb.finish_and_clear();
        }
    }
}
