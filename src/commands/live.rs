//! A capture read whole, or followed while it is recorded (`--follow`), behind one
//! stream of items, so that replay, correlate, timeline and detect print the same
//! records either way; followed, they also hear of quiet spells and Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::open_capture;
use crate::capture::{CaptureReader, FollowEnd, FollowItem, Follower, Header};
use crate::output::Progress;

/// How often a followed capture's output is flushed while events keep coming (a quiet
/// spell flushes at once).
pub(crate) const LIVE_FLUSH: Duration = Duration::from_millis(200);

pub(crate) enum Input {
    Whole(Box<CaptureReader>),
    Live(Box<Follower>),
}

impl Input {
    /// Open `files` whole, or follow them.
    pub fn open(files: &[PathBuf], follow: bool) -> Result<Input> {
        Self::open_stopped_by(files, follow, Arc::new(AtomicBool::new(false)))
    }

    /// [`Input::open`], where setting `stop` also ends following.
    pub fn open_stopped_by(
        files: &[PathBuf],
        follow: bool,
        stop: Arc<AtomicBool>,
    ) -> Result<Input> {
        if !follow {
            return Ok(Input::Whole(Box::new(open_capture(files)?)));
        }
        // Ctrl-C (or a kill) ends following; what is complete is printed.
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone())?;
        }
        let follower = Follower::open(files, stop)?;
        eprintln!(
            "following {} as it is recorded (Ctrl-C to stop)",
            follower.path().display()
        );
        Ok(Input::Live(Box::new(follower)))
    }

    /// Shorten how long a followed capture waits for late events (see
    /// [`Follower::with_lag`]).
    pub fn with_lag(mut self, lag: Duration) -> Input {
        if let Input::Live(f) = &mut self {
            f.set_lag(lag);
        }
        self
    }

    pub fn is_live(&self) -> bool {
        matches!(self, Input::Live(_))
    }

    pub fn header(&self) -> &Header {
        match self {
            Input::Whole(r) => r.header(),
            Input::Live(f) => f.header(),
        }
    }

    /// The first event's time, what offsets count from (a followed capture waits for
    /// its first block).
    pub fn start(&mut self) -> u64 {
        match self {
            Input::Whole(r) => r.index().time_range().map_or(0, |(first, _)| first),
            Input::Live(f) => f.first_ts().unwrap_or(0),
        }
    }

    /// A spinner while a whole capture is read; none when following, whose printed
    /// lines show the progress (and would be drawn over).
    pub fn progress(&self, what: &str) -> Progress {
        match self {
            Input::Whole(r) => Progress::for_blocks(r.blocks().len() as u64, what),
            Input::Live(_) => Progress::hidden(),
        }
    }

    /// Every item; `contents: false` leaves syscalls' paths and data out.
    pub fn items(&mut self, contents: bool) -> Box<dyn Iterator<Item = FollowItem> + '_> {
        match self {
            Input::Whole(r) => {
                let events = r.events();
                let events = if contents {
                    events
                } else {
                    events.without_syscall_contents()
                };
                Box::new(events.map(FollowItem::Read))
            }
            Input::Live(f) => {
                if !contents {
                    f.skip_syscall_contents();
                }
                Box::new(f.as_mut())
            }
        }
    }

    /// Following was ended by Ctrl-C or the `stop` flag.
    pub fn interrupted(&self) -> bool {
        matches!(self, Input::Live(f) if f.end() == Some(&FollowEnd::Interrupted))
    }

    /// Say on stderr why following ended, when it was not the recorder finishing.
    pub fn end_note(&self) {
        let Input::Live(f) = self else { return };
        match f.end() {
            Some(FollowEnd::Interrupted) => {
                eprintln!("stopped following (interrupted): printed what was complete")
            }
            Some(FollowEnd::RecorderGone { path }) => eprintln!(
                "note: no recorder writes {} any more and it was never finished (the \
                 recorder was killed?): stopped following",
                path.display()
            ),
            Some(FollowEnd::Finished) | None => {}
        }
    }
}
