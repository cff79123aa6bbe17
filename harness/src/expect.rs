//! Expectations: what must hold of a strategy in a scenario. One mechanism for both sources:
//! a scenario's own `[expect]` section (judged by `run` and `matrix`) and a gate's
//! expectations file (judged by `gate`, see the README section "The CI gate").
//!
//! `safe` means zero anomalies in every run; `finds` means each named anomaly must be found at
//! least once over the runs: the sensitivity check that proves the harness still has teeth;
//! `absent` means none of the named ones may happen in any run. `finds` and `absent` name
//! anomalies ([`ANOMALIES`]) or tolerated events ([`TOLERATED`], e.g. `grace_redeem`): a
//! tolerated event never fails `safe`, only an expectation that names it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pool_core::Strategy;
use serde::Deserialize;

use crate::check::{ANOMALIES, TOLERATED};
use crate::drive::subject::SubjectSpec;
use crate::scenario::{Scenario, CATALOG};
use crate::target::Target;

/// What is wanted of the runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// No anomaly at all.
    Safe,
    /// Each of these anomalies (or tolerated events) at least once.
    Finds(Vec<String>),
    /// None of these anomalies (or tolerated events), in any run.
    Absent(Vec<String>),
}

/// Check the names an expectation's `finds` or `absent` lists: anomalies or tolerated events.
pub fn check_names(names: &[String]) -> Result<(), String> {
    match names
        .iter()
        .find(|a| !ANOMALIES.contains(&a.as_str()) && !TOLERATED.contains(&a.as_str()))
    {
        Some(a) => Err(format!(
            "unknown anomaly '{a}' (allowed values: {}; or a tolerated event: {})",
            ANOMALIES.join(", "),
            TOLERATED.join(", ")
        )),
        None => Ok(()),
    }
}

impl Want {
    /// `safe`, `finds a, b` or `absent a, b`.
    pub fn text(&self) -> String {
        match self {
            Want::Safe => "safe".to_string(),
            Want::Finds(a) => format!("finds {}", a.join(", ")),
            Want::Absent(a) => format!("absent {}", a.join(", ")),
        }
    }

    /// Whether anomaly counts summed over the runs satisfy it.
    pub fn holds(&self, counts: &BTreeMap<String, u64>) -> bool {
        let n = |a: &str| counts.get(a).copied().unwrap_or(0);
        match self {
            Want::Safe => ANOMALIES.iter().all(|a| n(a) == 0),
            Want::Finds(list) => list.iter().all(|a| n(a) > 0),
            Want::Absent(list) => list.iter().all(|a| n(a) == 0),
        }
    }
}

/// One expectation about one pool under test (a strategy or a subject) in one scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// As written (preset name, spec, or subject name or command).
    pub strategy_name: String,
    /// The pool under test (compares equal to a [`Strategy`] for model targets).
    pub strategy: Target,
    pub scenario: String,
    pub want: Want,
}

impl Expect {
    /// A stable, readable identity: `flock-txn in refresh-race: safe`.
    pub fn id(&self) -> String {
        format!(
            "{} in {}: {}",
            self.strategy_name,
            self.scenario,
            self.want_text()
        )
    }

    pub fn want_text(&self) -> String {
        self.want.text()
    }

    /// Whether counts summed over this expectation's runs satisfy it. `counts` holds anomaly
    /// counts and, where known, tolerated counts ([`crate::check::Verdict::tally`]); a name it
    /// lacks counts 0.
    pub fn holds(&self, counts: &BTreeMap<String, u64>) -> bool {
        self.want.holds(counts)
    }

    /// The expectations a scenario's `[expect]` section states.
    pub fn from_scenario(sc: &Scenario) -> Vec<Expect> {
        let parse =
            |s: &String| Target::Model(Strategy::parse(s).expect("validated with the scenario"));
        let mut out: Vec<Expect> = sc
            .expect
            .clean
            .iter()
            .map(|s| Expect {
                strategy_name: s.clone(),
                strategy: parse(s),
                scenario: sc.name.clone(),
                want: Want::Safe,
            })
            .collect();
        out.extend(sc.expect.finds.iter().map(|(s, list)| Expect {
            strategy_name: s.clone(),
            strategy: parse(s),
            scenario: sc.name.clone(),
            want: Want::Finds(list.clone()),
        }));
        out.extend(sc.expect.absent.iter().map(|(s, list)| Expect {
            strategy_name: s.clone(),
            strategy: parse(s),
            scenario: sc.name.clone(),
            want: Want::Absent(list.clone()),
        }));
        out
    }
}

/// An expectations file: named subjects and a list of `[[expect]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// `name = "command"`: subjects the `[[expect]]` tables name.
    #[serde(default)]
    subjects: BTreeMap<String, String>,
    #[serde(rename = "expect", default)]
    expect: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// A preset or spec (pool-core)...
    #[serde(default)]
    strategy: Option<String>,
    /// ...or a subject: a name from `[subjects]` (or `--subject NAME=CMD`), or a command.
    #[serde(default)]
    subject: Option<String>,
    /// Catalog scenario names or scenario file paths; default: every catalog scenario.
    #[serde(default)]
    scenarios: Vec<String>,
    #[serde(default)]
    safe: bool,
    #[serde(default)]
    finds: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
}

/// Load and validate an expectations file. Errors name the file, the line where known, and
/// the fix.
/// `subjects` (from `--subject NAME=CMD`) define or override the file's named subjects;
/// `timeout` is each subject's per-request timeout.
pub fn load_file(
    path: &Path,
    subjects: &[SubjectSpec],
    timeout: Duration,
) -> Result<(Vec<Expect>, Vec<Scenario>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_file_with(&text, &path.display().to_string(), subjects, timeout)
}

/// Parse expectations text; `origin` names it in errors. Returns the expectations and every
/// scenario they name.
pub fn parse_file(text: &str, origin: &str) -> Result<(Vec<Expect>, Vec<Scenario>), String> {
    parse_file_with(text, origin, &[], Duration::from_secs(10))
}

/// [`parse_file`] with subjects defined on the command line (they override the file's).
pub fn parse_file_with(
    text: &str,
    origin: &str,
    subjects: &[SubjectSpec],
    timeout: Duration,
) -> Result<(Vec<Expect>, Vec<Scenario>), String> {
    let file: File = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                format!(
                    ":{}",
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        format!("{origin}{at}: {}", e.message())
    })?;
    if file.expect.is_empty() {
        return Err(format!(
            "{origin}: no [[expect]] tables: a gate with nothing to check cannot fail"
        ));
    }
    let mut expects = Vec::new();
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (i, e) in file.expect.iter().enumerate() {
        let written = e.strategy.as_deref().or(e.subject.as_deref()).unwrap_or("");
        let at = format!("{origin}: [[expect]] #{} ({written})", i + 1);
        let strategy = match (&e.strategy, &e.subject) {
            (Some(s), None) => {
                Target::Model(Strategy::parse(s).map_err(|err| format!("{at}: {err}"))?)
            }
            (None, Some(s)) => Target::Subject(resolve_subject(s, &file.subjects, subjects, timeout)),
            _ => {
                return Err(format!(
                    "{at}: give exactly one of `strategy = \"PRESET or SPEC\"` or `subject = \"NAME or COMMAND\"`"
                ))
            }
        };
        let want = match (e.safe, e.finds.is_empty(), e.absent.is_empty()) {
            (true, true, true) => Want::Safe,
            (false, false, true) => {
                check_names(&e.finds).map_err(|err| format!("{at}: {err}"))?;
                Want::Finds(e.finds.clone())
            }
            (false, true, false) => {
                check_names(&e.absent).map_err(|err| format!("{at}: {err}"))?;
                Want::Absent(e.absent.clone())
            }
            _ => {
                return Err(format!(
                    "{at}: give exactly one of `safe = true`, `finds = [...]` or `absent = [...]`"
                ))
            }
        };
        let names: Vec<String> = if e.scenarios.is_empty() {
            CATALOG.iter().map(|(n, _)| n.to_string()).collect()
        } else {
            e.scenarios.clone()
        };
        for name in names {
            let known = scenarios
                .iter()
                .find(|s| s.source.as_deref().unwrap_or(&s.name) == name);
            let sc = match known {
                Some(s) => s.clone(),
                None => {
                    let sc = Scenario::find(&name).map_err(|err| format!("{at}: {err}"))?;
                    if let Some(other) = scenarios.iter().find(|s| s.name == sc.name) {
                        return Err(format!(
                            "{at}: '{name}' and '{}' are both scenarios named '{}': a gate tells its cells apart by scenario name; rename one (its `name = ...`)",
                            other.source.as_deref().unwrap_or(&other.name),
                            sc.name
                        ));
                    }
                    scenarios.push(sc.clone());
                    sc
                }
            };
            expects.push(Expect {
                strategy_name: written.to_string(),
                strategy: strategy.clone(),
                scenario: sc.name.clone(),
                want: want.clone(),
            });
        }
    }
    Ok((expects, scenarios))
}

/// A subject as an `[[expect]]` table names it: a name defined on the command line or in the
/// file's `[subjects]`, else the command itself (named by its command line).
fn resolve_subject(
    written: &str,
    in_file: &BTreeMap<String, String>,
    cli: &[SubjectSpec],
    timeout: Duration,
) -> SubjectSpec {
    if let Some(s) = cli.iter().find(|s| s.name == written) {
        return s.clone();
    }
    let (name, command) = match in_file.get(written) {
        Some(cmd) => (written.to_string(), cmd.clone()),
        None => (written.to_string(), written.to_string()),
    };
    SubjectSpec {
        name,
        command,
        timeout,
        observe: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_and_finds_are_judged_on_counts() {
        let e = |want| Expect {
            strategy_name: "none".into(),
            strategy: Target::Model(Strategy::parse("none").unwrap()),
            scenario: "refresh-race".into(),
            want,
        };
        let mut counts: BTreeMap<String, u64> =
            ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect();
        assert!(e(Want::Safe).holds(&counts));
        let finds = e(Want::Finds(vec![
            "double_redeem".into(),
            "lost_update".into(),
        ]));
        assert!(!finds.holds(&counts));
        counts.insert("double_redeem".into(), 2);
        assert!(!e(Want::Safe).holds(&counts));
        assert!(!finds.holds(&counts));
        counts.insert("lost_update".into(), 1);
        assert!(finds.holds(&counts));
        assert_eq!(
            finds.id(),
            "none in refresh-race: finds double_redeem, lost_update"
        );
    }

    /// Issue #13 item 4: a tolerated event fails no expectation unless one names it.
    #[test]
    fn tolerated_events_count_only_where_an_expectation_names_them() {
        let e = |want| Expect {
            strategy_name: "flock-txn".into(),
            strategy: Target::Model(Strategy::parse("flock-txn").unwrap()),
            scenario: "crash-mid-persist".into(),
            want,
        };
        let mut counts: BTreeMap<String, u64> =
            ANOMALIES.iter().map(|a| (a.to_string(), 0)).collect();
        counts.insert("grace_redeem".into(), 6);
        assert!(e(Want::Safe).holds(&counts));
        assert!(e(Want::Finds(vec!["grace_redeem".into()])).holds(&counts));
        let none = e(Want::Absent(vec!["grace_redeem".into()]));
        assert!(!none.holds(&counts));
        assert_eq!(none.want_text(), "absent grace_redeem");
        counts.insert("grace_redeem".into(), 0);
        assert!(none.holds(&counts));
        assert!(e(Want::Absent(vec!["double_redeem".into()])).holds(&counts));
        counts.insert("double_redeem".into(), 1);
        assert!(!e(Want::Absent(vec!["double_redeem".into()])).holds(&counts));
    }

    #[test]
    fn a_file_may_ask_for_tolerated_events_and_old_files_stay_valid() {
        let (ex, _) = parse_file(
            "[[expect]]\nstrategy = \"flock-txn\"\nscenarios = [\"crash-mid-persist\"]\nfinds = [\"grace_redeem\"]\n\n[[expect]]\nstrategy = \"flock-txn\"\nscenarios = [\"refresh-race\"]\nabsent = [\"grace_redeem\", \"double_redeem\"]\n",
            "e.toml",
        )
        .unwrap();
        assert_eq!(ex[0].want, Want::Finds(vec!["grace_redeem".into()]));
        assert_eq!(
            ex[1].want,
            Want::Absent(vec!["grace_redeem".into(), "double_redeem".into()])
        );
        let err = |t: &str| parse_file(t, "e.toml").unwrap_err();
        assert!(
            err("[[expect]]\nstrategy = \"none\"\nabsent = [\"grace\"]\n")
                .contains("unknown anomaly 'grace'")
        );
        assert!(
            err("[[expect]]\nstrategy = \"none\"\nsafe = true\nabsent = [\"grace_redeem\"]\n")
                .contains("exactly one of")
        );
    }

    #[test]
    fn a_file_expands_scenarios_and_refuses_nonsense() {
        let (ex, scs) = parse_file(
            "[[expect]]\nstrategy = \"flock-txn\"\nsafe = true\n",
            "e.toml",
        )
        .unwrap();
        assert_eq!(ex.len(), CATALOG.len());
        assert_eq!(scs.len(), CATALOG.len());
        let err = |t: &str| parse_file(t, "e.toml").unwrap_err();
        assert!(err("").contains("no [[expect]]"));
        assert!(err("[[expect]]\nstrategy = \"none\"\n").contains("exactly one of"));
        assert!(err("[[expect]]\nsafe = true\n").contains("exactly one of `strategy"));
        assert!(
            err("[[expect]]\nstrategy = \"none\"\nsubject = \"x\"\nsafe = true\n")
                .contains("exactly one of `strategy")
        );
        assert!(
            err("[[expect]]\nstrategy = \"none\"\nsafe = true\nfinds = [\"torn_read\"]\n")
                .contains("exactly one of")
        );
        assert!(err("[[expect]]\nstrategy = \"nope\"\nsafe = true\n")
            .contains("unknown strategy 'nope'"));
        assert!(err("[[expect]]\nstrategy = \"none\"\nfinds = [\"boom\"]\n")
            .contains("unknown anomaly 'boom'"));
        assert!(
            err("[[expect]]\nstrategy = \"none\"\nsafe = true\nscenarios = [\"nope\"]\n")
                .contains("no such catalog scenario")
        );
        let e = err("[[expect]]\nstrategy = \"none\"\nsafty = true\n");
        assert!(e.starts_with("e.toml:3:") && e.contains("safty"), "{e}");
    }

    #[test]
    fn a_scenario_file_is_loaded_once_and_two_scenarios_may_not_share_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |file: &str, name: &str| {
            let text = CATALOG
                .iter()
                .find(|(n, _)| *n == "refresh-race")
                .unwrap()
                .1;
            let path = dir.path().join(file);
            std::fs::write(
                &path,
                text.replacen("\"refresh-race\"", &format!("{name:?}"), 1),
            )
            .unwrap();
            path.to_str().unwrap().to_string()
        };
        let a = write("a.toml", "mine");
        let text = format!(
            "[[expect]]\nstrategy = \"none\"\nscenarios = [{a:?}]\nfinds = [\"double_redeem\"]\n\n\
             [[expect]]\nstrategy = \"flock-txn\"\nscenarios = [{a:?}]\nsafe = true\n"
        );
        let (ex, scs) = parse_file(&text, "e.toml").unwrap();
        assert_eq!(scs.len(), 1);
        assert_eq!(scs[0].source.as_deref(), Some(a.as_str()));
        assert!(ex.iter().all(|e| e.scenario == "mine"));
        // A second file with the same name, or a file named as a catalog scenario it names too.
        let b = write("b.toml", "mine");
        let clash =
            format!("[[expect]]\nstrategy = \"none\"\nscenarios = [{a:?}, {b:?}]\nsafe = true\n");
        let e = parse_file(&clash, "e.toml").unwrap_err();
        assert!(
            e.contains("both scenarios named 'mine'") && e.contains(&a),
            "{e}"
        );
        let c = write("c.toml", "refresh-race");
        let clash = format!(
            "[[expect]]\nstrategy = \"none\"\nscenarios = [\"refresh-race\", {c:?}]\nsafe = true\n"
        );
        assert!(parse_file(&clash, "e.toml")
            .unwrap_err()
            .contains("rename one"));
    }

    #[test]
    fn subjects_are_named_in_the_file_on_the_command_line_or_by_their_command() {
        let text = "[subjects]\npy = \"python3 pool.py\"\n\n\
                    [[expect]]\nsubject = \"py\"\nscenarios = [\"refresh-race\"]\nsafe = true\n\n\
                    [[expect]]\nsubject = \"sh broken.sh\"\nscenarios = [\"refresh-race\"]\nfinds = [\"double_redeem\"]\n";
        let (ex, scs) = parse_file(text, "e.toml").unwrap();
        assert_eq!(scs.len(), 1);
        let Target::Subject(s) = &ex[0].strategy else {
            panic!("{:?}", ex[0])
        };
        assert_eq!(
            (s.name.as_str(), s.command.as_str()),
            ("py", "python3 pool.py")
        );
        assert_eq!(ex[0].id(), "py in refresh-race: safe");
        assert_eq!(ex[1].strategy.spec(), "sh broken.sh");
        let cli = SubjectSpec {
            name: "py".into(),
            command: "python3 other.py".into(),
            timeout: Duration::from_secs(1),
            observe: false,
        };
        let (ex, _) = parse_file_with(text, "e.toml", &[cli], Duration::from_secs(1)).unwrap();
        assert_eq!(ex[0].strategy.spec(), "python3 other.py");
    }

    #[test]
    fn the_shipped_expectations_file_is_valid() {
        let text = include_str!("../../ci/expectations.toml");
        let (ex, _) = parse_file(text, "ci/expectations.toml").unwrap();
        assert!(ex.iter().any(|e| e.want == Want::Safe));
        assert!(ex.iter().any(|e| matches!(e.want, Want::Finds(_))));
    }
}
