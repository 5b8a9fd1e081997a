//! What a chaos run shows while it runs: a live bar on a terminal (indicatif), plain lines
//! every few seconds otherwise (CI logs), both from the same snapshot.

use std::io::IsTerminal as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::load::LoadCounters;

/// How often a plain line is printed when stdout is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// One look at the run.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub duration: Duration,
    pub sent: u64,
    pub answered: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub in_flight: u64,
    /// `kind on server` of each fault in force now.
    pub active: Vec<String>,
    pub events_cleared: usize,
    pub events_recovered: usize,
}

impl Snapshot {
    pub fn read(counters: &LoadCounters) -> Snapshot {
        Snapshot {
            sent: counters.sent.load(Ordering::Relaxed),
            answered: counters.answered.load(Ordering::Relaxed),
            succeeded: counters.succeeded.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            in_flight: counters.in_flight.load(Ordering::Relaxed),
            ..Snapshot::default()
        }
    }

    fn line(&self) -> String {
        let active = if self.active.is_empty() {
            "none".to_string()
        } else {
            self.active.join(", ")
        };
        format!(
            "sent {} answered {} ok {} errors {} in flight {} | faults: {} | recovered {}/{}",
            self.sent,
            self.answered,
            self.succeeded,
            self.failed,
            self.in_flight,
            active,
            self.events_recovered,
            self.events_cleared
        )
    }
}

/// The display.
pub enum Progress {
    Bar(ProgressBar),
    Plain { last: Option<Duration> },
    Quiet,
}

impl Progress {
    /// A bar when stdout is a terminal, plain lines otherwise.
    pub fn for_stdout(duration: Duration) -> Progress {
        if std::io::stdout().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(duration.as_millis() as u64),
                ProgressDrawTarget::stdout(),
            );
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Progress::Bar(bar)
        } else {
            Progress::Plain { last: None }
        }
    }

    pub fn update(&mut self, s: &Snapshot) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(s.elapsed.min(s.duration).as_millis() as u64);
                bar.set_message(s.line());
            }
            Progress::Plain { last } => {
                if last.is_none_or(|l| s.elapsed >= l + PLAIN_EVERY) {
                    *last = Some(s.elapsed);
                    println!(
                        "[{:>5.1}s/{:.0}s] {}",
                        s.elapsed.as_secs_f64(),
                        s.duration.as_secs_f64(),
                        s.line()
                    );
                }
            }
            Progress::Quiet => {}
        }
    }

    pub fn finish(&mut self, s: &Snapshot) {
        match self {
            Progress::Bar(bar) => bar.finish_with_message(s.line()),
            Progress::Plain { .. } => println!(
                "[{:>5.1}s/{:.0}s] done: {}",
                s.elapsed.as_secs_f64(),
                s.duration.as_secs_f64(),
                s.line()
            ),
            Progress::Quiet => {}
        }
    }

    /// Prints a line without breaking the bar.
    pub fn say(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Plain { .. } => println!("{line}"),
            Progress::Quiet => {}
        }
    }
}
