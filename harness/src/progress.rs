//! Progress of the long commands (`matrix`, `gate`, `bench`, `crash`, `explore`) on stderr,
//! one mechanism for all of them.
//!
//! On a terminal it is an indicatif bar with the elapsed time, the ETA and the cell in hand;
//! when stderr is not a terminal (a CI log, a pipe) it is one plain line per finished cell
//! (`matrix [3/12] none x refresh-race: double:1 dead:1 (1.20 s; 5.31 s elapsed)`), plus, inside
//! a long cell that reports its own advance (crash kills, explore cases), a line at most every
//! [`HEARTBEAT`]; with `-q/--quiet` nothing.
//!
//! Guarantees: progress goes to stderr only, never to stdout (reports are unchanged by it),
//! the bar is cleared before the command prints its report, and no thread is started (the
//! fork driver must fork from a single-threaded process). It does not: measure
//! anything a report relies on (its times are the wall clock, for people).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Style {
    /// Nothing (`-q`, and the default for library callers).
    #[default]
    Quiet,
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// One plain line per finished cell (stderr is not a terminal).
    Lines,
}

impl Style {
    /// The style for this process: quiet when asked, a bar on a terminal, lines otherwise.
    pub fn detect(quiet: bool) -> Style {
        if quiet {
            Style::Quiet
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines
        }
    }
}

/// The longest a line-mode cell that reports its advance stays silent.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The progress of one command over `total` cells.
pub struct Progress {
    style: Style,
    command: String,
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    cell: Option<(String, Instant)>,
    last_line: Instant,
}

impl Progress {
    /// Progress of `command` (the name shown in lines) over `total` cells.
    pub fn new(style: Style, command: &str, total: u64) -> Progress {
        let bar = (style == Style::Bar).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} ETA {eta} {wide_msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(command.to_string());
            // No steady tick: it would start a thread, and the fork driver forks only from a
            // single-threaded process. The bar redraws at each start, advance and finish.
            b
        });
        let now = Instant::now();
        Progress {
            style,
            command: command.to_string(),
            bar,
            total,
            done: 0,
            started: now,
            cell: None,
            last_line: now,
        }
    }

    /// A progress that shows nothing.
    pub fn quiet() -> Progress {
        Progress::new(Style::Quiet, "", 0)
    }

    pub fn style(&self) -> Style {
        self.style
    }

    /// Cell `name` starts.
    pub fn start(&mut self, name: &str) {
        let now = Instant::now();
        self.cell = Some((name.to_string(), now));
        self.last_line = now;
        if let Some(b) = &self.bar {
            b.set_message(format!("{name} ..."));
        }
    }

    /// The cell in hand has advanced: `note` says how far (e.g. `340/1000 kills in 30 runs`).
    /// A bar shows it at once; lines show it at most every [`HEARTBEAT`].
    pub fn advance(&mut self, note: &str) {
        let name = self.cell.as_ref().map_or("", |(n, _)| n.as_str());
        match self.style {
            Style::Quiet => {}
            Style::Bar => {
                if let Some(b) = &self.bar {
                    b.set_message(format!("{name}: {note}"));
                }
            }
            Style::Lines => {
                if self.last_line.elapsed() >= HEARTBEAT {
                    self.last_line = Instant::now();
                    eprintln!(
                        "{} [{}/{}] {name}: {note} ({:.1} s elapsed)",
                        self.command,
                        self.done + 1,
                        self.total,
                        self.started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// The cell in hand finished with `summary` (its verdict, in a few words).
    pub fn done(&mut self, summary: &str) {
        let (name, began) = self
            .cell
            .take()
            .unwrap_or_else(|| (String::new(), Instant::now()));
        self.done += 1;
        match self.style {
            Style::Quiet => {}
            Style::Bar => {
                if let Some(b) = &self.bar {
                    b.set_position(self.done);
                    b.set_message(format!("{name}: {summary}"));
                }
            }
            Style::Lines => eprintln!("{}", self.line(&name, summary, began.elapsed())),
        }
    }

    /// The line-mode line of a finished cell.
    fn line(&self, name: &str, summary: &str, took: Duration) -> String {
        format!(
            "{} [{}/{}] {name}: {summary} ({:.2} s; {:.2} s elapsed)",
            self.command,
            self.done,
            self.total,
            took.as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        )
    }

    /// Every cell is done: clear the bar (the report follows on stdout).
    pub fn finish(self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An early return (an error) must not leave a bar drawn over the message.
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.finish_and_clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_command_the_cell_its_verdict_and_the_count() {
        let mut p = Progress::new(Style::Quiet, "matrix", 12);
        p.start("none x refresh-race");
        p.done("double:1");
        p.done += 2;
        let l = p.line(
            "none x refresh-race",
            "double:1",
            Duration::from_millis(1200),
        );
        assert!(
            l.starts_with("matrix [3/12] none x refresh-race: double:1 (1.20 s; "),
            "{l}"
        );
        assert!(l.ends_with(" s elapsed)"), "{l}");
    }
}
