//! The live status line while recording, shown only on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

/// The live status line on a terminal (events/s, MB written, lost so far).
pub(super) struct StatusLine(Option<indicatif::ProgressBar>);

impl StatusLine {
    pub(super) fn new(wanted: bool) -> StatusLine {
        if wanted && std::io::stderr().is_terminal() {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(200));
            StatusLine(Some(pb))
        } else {
            StatusLine(None)
        }
    }

    pub(super) fn update(&self, rate: f64, bytes: u64, lost: u64) {
        if let Some(pb) = &self.0 {
            pb.set_message(format!(
                "{rate:.0} events/s, {:.1} MB written, {lost} lost  (Ctrl-C to stop)",
                bytes as f64 / 1e6
            ));
        }
    }

    pub(super) fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}
