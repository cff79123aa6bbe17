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

use pool_core::Strategy;
use serde::Deserialize;

use crate::check::{ANOMALIES, TOLERATED};
use crate::scenario::{Scenario, CATALOG};

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

/// One expectation about one strategy in one scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// As written (preset name or spec).
    pub strategy_name: String,
    pub strategy: Strategy,
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
        match &self.want {
            Want::Safe => "safe".to_string(),
            Want::Finds(a) => format!("finds {}", a.join(", ")),
            Want::Absent(a) => format!("absent {}", a.join(", ")),
        }
    }

    /// Whether counts summed over this expectation's runs satisfy it. `counts` holds anomaly
    /// counts and, where known, tolerated counts ([`crate::check::Verdict::tally`]); a name it
    /// lacks counts 0.
    pub fn holds(&self, counts: &BTreeMap<String, u64>) -> bool {
        let n = |a: &str| counts.get(a).copied().unwrap_or(0);
        match &self.want {
            Want::Safe => ANOMALIES.iter().all(|a| n(a) == 0),
            Want::Finds(list) => list.iter().all(|a| n(a) > 0),
            Want::Absent(list) => list.iter().all(|a| n(a) == 0),
        }
    }

    /// The expectations a scenario's `[expect]` section states.
    pub fn from_scenario(sc: &Scenario) -> Vec<Expect> {
        let parse = |s: &String| Strategy::parse(s).expect("validated with the scenario");
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

/// An expectations file: a list of `[[expect]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "expect", default)]
    expect: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    strategy: String,
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
pub fn load_file(path: &Path) -> Result<(Vec<Expect>, Vec<Scenario>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_file(&text, &path.display().to_string())
}

/// Parse expectations text; `origin` names it in errors. Returns the expectations and every
/// scenario they name.
pub fn parse_file(text: &str, origin: &str) -> Result<(Vec<Expect>, Vec<Scenario>), String> {
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
        let at = format!("{origin}: [[expect]] #{} ({})", i + 1, e.strategy);
        let strategy = Strategy::parse(&e.strategy).map_err(|err| format!("{at}: {err}"))?;
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
            let sc = match scenarios.iter().find(|s| s.name == name) {
                Some(s) => s.clone(),
                None => {
                    let sc = Scenario::find(&name).map_err(|err| format!("{at}: {err}"))?;
                    scenarios.push(sc.clone());
                    sc
                }
            };
            expects.push(Expect {
                strategy_name: e.strategy.clone(),
                strategy,
                scenario: sc.name.clone(),
                want: want.clone(),
            });
        }
    }
    Ok((expects, scenarios))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_and_finds_are_judged_on_counts() {
        let e = |want| Expect {
            strategy_name: "none".into(),
            strategy: Strategy::parse("none").unwrap(),
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
            strategy: Strategy::parse("flock-txn").unwrap(),
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
    fn the_shipped_expectations_file_is_valid() {
        let text = include_str!("../../ci/expectations.toml");
        let (ex, _) = parse_file(text, "ci/expectations.toml").unwrap();
        assert!(ex.iter().any(|e| e.want == Want::Safe));
        assert!(ex.iter().any(|e| matches!(e.want, Want::Finds(_))));
    }
}
