//! The pool under test: one notion for every command. Either pool-core under a strategy (a
//! preset or a spec string), run by the fork driver, or an external subject command that
//! speaks `poolcheck-subject/1` (`drive/subject.rs`). `run`, `matrix`, `gate` and `crash` take
//! either, judge it with [`run_and_judge`], and report it in the same contract: `strategy` is
//! the preset label or the subject's name, `spec` the strategy spec or the subject's command,
//! `driver` is `fork` or `subject`.
//!
//! Guarantees: a run in which a process failed on its own (a crash, a hang, a subject that
//! broke the protocol or never started), as opposed to a planned nemesis kill, has verdict
//! `error`, whatever its anomaly counts: a run that did not run is never `clean`.

use std::time::Duration;

use pool_core::Strategy;

use crate::drive::fork::{self, DriveError, RunOptions, RunRecord};
use crate::drive::subject::SubjectSpec;
use crate::expect::Expect;
use crate::report::RunReport;
use crate::scenario::Scenario;

/// What a command runs: pool-core under a strategy, or an external subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Model(Strategy),
    Subject(SubjectSpec),
}

impl PartialEq<Strategy> for Target {
    fn eq(&self, other: &Strategy) -> bool {
        matches!(self, Target::Model(s) if s == other)
    }
}

impl From<Strategy> for Target {
    fn from(s: Strategy) -> Target {
        Target::Model(s)
    }
}

impl Target {
    /// The row label: the preset name (or spec), or the subject's name.
    pub fn label(&self) -> String {
        match self {
            Target::Model(s) => s.label(),
            Target::Subject(s) => s.name.clone(),
        }
    }

    /// What identifies it exactly: the strategy spec, or the subject's command line.
    pub fn spec(&self) -> String {
        match self {
            Target::Model(s) => s.spec(),
            Target::Subject(s) => s.command.clone(),
        }
    }

    /// The report's `driver`.
    pub fn driver(&self) -> &'static str {
        match self {
            Target::Model(_) => "fork",
            Target::Subject(_) => "subject",
        }
    }

    /// The strategy, for model targets.
    pub fn strategy(&self) -> Option<Strategy> {
        match self {
            Target::Model(s) => Some(*s),
            Target::Subject(_) => None,
        }
    }

    /// The `poolcheck run` option that selects it again (for replay commands).
    pub fn run_option(&self) -> String {
        match self {
            Target::Model(s) => format!("--strategy {}", s.spec()),
            Target::Subject(s) => {
                let arg = match s.name.as_str() {
                    "subject" => s.command.clone(),
                    name => format!("{name}={}", s.command),
                };
                let observe = if s.observe { " --observe syscalls" } else { "" };
                format!("--subject {}{observe}", shell_quote(&arg))
            }
        }
    }
}

/// Parse a `--subject` argument: `NAME=CMD` names the subject (NAME: letters, digits, `.`,
/// `_`, `-`); anything else is the command itself, named `subject`. (A command that starts
/// with an environment assignment is written `env VAR=value cmd ...`.)
pub fn parse_subject(arg: &str, timeout: Duration) -> Result<SubjectSpec, String> {
    let (name, command) = match arg.split_once('=') {
        Some((n, c))
            if !n.is_empty()
                && n.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)) =>
        {
            (n.to_string(), c.trim().to_string())
        }
        _ => ("subject".to_string(), arg.trim().to_string()),
    };
    if command.is_empty() {
        return Err(format!(
            "--subject '{arg}' has no command: write --subject NAME=CMD or --subject CMD"
        ));
    }
    Ok(SubjectSpec {
        name,
        command,
        timeout,
        observe: false,
    })
}

/// Run `sc` with `target` on real processes and judge it against `expects` (those about this
/// target in this scenario apply).
pub fn run_and_judge(
    sc: &Scenario,
    target: &Target,
    opts: &RunOptions,
    expects: &[Expect],
) -> Result<(RunReport, RunRecord), DriveError> {
    let (strategy, opts) = match target {
        Target::Model(s) => (*s, opts.clone()),
        Target::Subject(spec) => (
            // Not used by subject workers; `external-cli` roles do not use it either.
            Strategy::parse("none").expect("a preset"),
            RunOptions {
                subject: Some(spec.clone()),
                ..opts.clone()
            },
        ),
    };
    let rec = fork::run(sc, strategy, &opts)?;
    let run = crate::report::judge(sc, target, &rec.history, rec.stats(), expects);
    Ok((run, rec))
}

/// The target a judged run was of (its `driver`, `strategy` and `spec`), for replay commands.
pub fn of_report(r: &RunReport) -> Target {
    match (r.driver.as_str(), Strategy::parse(&r.spec)) {
        ("fork", Ok(s)) => Target::Model(s),
        _ => Target::Subject(SubjectSpec {
            name: r.strategy.clone(),
            command: r.spec.clone(),
            timeout: SubjectSpec::new("").timeout,
            observe: r.observed,
        }),
    }
}

/// Quote for `sh` in a printed command line.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_arguments_take_an_optional_name() {
        let t = Duration::from_secs(1);
        let s = parse_subject("py=python3 pool.py --fix", t).unwrap();
        assert_eq!(
            (s.name.as_str(), s.command.as_str()),
            ("py", "python3 pool.py --fix")
        );
        let s = parse_subject("python3 pool.py --a=b", t).unwrap();
        assert_eq!(
            (s.name.as_str(), s.command.as_str()),
            ("subject", "python3 pool.py --a=b")
        );
        assert!(parse_subject("py=", t).unwrap_err().contains("no command"));
        assert!(parse_subject("  ", t).is_err());
    }

    #[test]
    fn targets_compare_with_strategies_and_quote_for_replay() {
        let st = Strategy::parse("flock-txn").unwrap();
        assert!(Target::Model(st) == st);
        let sub = Target::Subject(parse_subject("py=python3 it's.py", Duration::ZERO).unwrap());
        assert!(sub != st);
        assert_eq!(sub.run_option(), "--subject 'py=python3 it'\\''s.py'");
        assert_eq!(sub.driver(), "subject");
        assert_eq!(
            Target::Model(st).run_option(),
            format!("--strategy {}", st.spec())
        );
    }
}
