//! `--html`: the HTML report and its witness timelines, from a real `none` refresh race.
//! The binary forks its workers, so it is driven as a subprocess (a test thread must not fork).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    /// stdout
    out: String,
    html: PathBuf,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Run {
    fn report(&self) -> Value {
        serde_json::from_str(&self.out).unwrap()
    }
}

/// `poolcheck run --scenario refresh-race --strategy none --format FORMAT --html DIR --keep
/// KEEP`, and the tokens of the run's final store.
fn refresh_race_none(format: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    let keep = dir.path().join("keep");
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(["run", "--scenario", "refresh-race", "--strategy", "none"])
        .args(["--format", format, "--html"])
        .arg(&html)
        .arg("--keep")
        .arg(&keep)
        .output()
        .expect("poolcheck runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("index.html"), "{err}");
    let store: Value =
        serde_json::from_slice(&std::fs::read(keep.join("auth.json")).unwrap()).unwrap();
    let mut tokens = Vec::new();
    for e in store["credential_pool"]["anthropic"].as_array().unwrap() {
        for f in ["access_token", "refresh_token"] {
            if let Some(t) = e[f].as_str() {
                tokens.push(t.to_string());
            }
        }
    }
    assert!(!tokens.is_empty() && tokens.iter().all(|t| t.len() == 43));
    Run {
        out: String::from_utf8(out.stdout).unwrap(),
        html,
        tokens,
        _dir: dir,
    }
}

fn parse(text: &str) -> roxmltree::Document<'_> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(text, opts)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{text}"))
}

fn class_is<'a>(n: &roxmltree::Node<'a, 'a>, class: &str) -> bool {
    n.attribute("class") == Some(class)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn html_report_of_a_none_refresh_race_shows_every_witness_on_its_lanes() {
    let run = refresh_race_none("json");
    let report = run.report();
    let r = &report["runs"][0];
    let witnesses = r["witnesses"].as_array().unwrap();
    assert!(witnesses.iter().any(|w| w["anomaly"] == "double_redeem"));
    let processes = r["stats"]["processes"].as_u64().unwrap() as usize;

    // index.html: well-formed, the anomalous cell links to the run's section, which shows one
    // timeline per witness, each an SVG file that exists.
    let index = std::fs::read_to_string(run.html.join("index.html")).unwrap();
    let doc = parse(&index);
    let links: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("a"))
        .filter_map(|n| n.attribute("href"))
        .collect();
    assert!(links.contains(&"#run-000"), "{links:?}");
    assert!(doc
        .descendants()
        .any(|n| n.attribute("id") == Some("run-000")));
    let imgs: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("img"))
        .filter_map(|n| n.attribute("src"))
        .collect();
    assert_eq!(imgs.len(), witnesses.len(), "{imgs:?}");
    for w in witnesses {
        let name = format!("run-000-{}.svg", w["anomaly"].as_str().unwrap());
        assert!(imgs.contains(&name.as_str()), "{name} not in {imgs:?}");
        assert!(run.html.join(&name).is_file());
    }

    for w in witnesses {
        let anomaly = w["anomaly"].as_str().unwrap();
        let story: Vec<&str> = w["story"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let events: Vec<u64> = w["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_u64().unwrap())
            .collect();
        assert_eq!(events.len(), story.len(), "{anomaly}");
        let text =
            std::fs::read_to_string(run.html.join(format!("run-000-{anomaly}.svg"))).unwrap();
        assert!(!text.contains("<script"), "{anomaly}: no scripts");
        assert!(!text.contains("href="), "{anomaly}: no external assets");
        let doc = parse(&text);
        assert_eq!(doc.root_element().tag_name().name(), "svg");

        // One lane per worker, one for the harness, one for the issuer.
        let lanes: BTreeSet<&str> = doc
            .descendants()
            .filter(|n| class_is(n, "lane"))
            .filter_map(|n| n.attribute("data-lane"))
            .collect();
        let mut want: BTreeSet<String> = (0..=processes).map(|p| format!("p{p}")).collect();
        want.insert("issuer".into());
        let lanes: BTreeSet<String> = lanes.into_iter().map(String::from).collect();
        assert_eq!(lanes, want, "{anomaly}");

        // Every step of the story is numbered on the mark of its record, in order.
        let marks: BTreeSet<u64> = doc
            .descendants()
            .filter(|n| class_is(n, "mark"))
            .map(|n| n.attribute("data-rec").unwrap().parse().unwrap())
            .collect();
        let steps: Vec<(u64, u64)> = doc
            .descendants()
            .filter(|n| class_is(n, "step"))
            .map(|n| {
                (
                    n.attribute("data-step").unwrap().parse().unwrap(),
                    n.attribute("data-rec").unwrap().parse().unwrap(),
                )
            })
            .collect();
        let want: Vec<(u64, u64)> = events
            .iter()
            .enumerate()
            .map(|(k, &e)| (k as u64 + 1, e))
            .collect();
        assert_eq!(steps, want, "{anomaly}");
        for e in &events {
            assert!(marks.contains(e), "{anomaly}: record {e} has no mark");
        }
        // The story is printed under the lanes, step by step.
        let printed: Vec<String> = doc
            .descendants()
            .filter(|n| class_is(n, "story"))
            .map(|n| n.text().unwrap_or_default().to_string())
            .collect();
        assert_eq!(printed, story, "{anomaly}");
    }
}

/// Two processes redeeming one token show the same colour: the double_redeem witness's two
/// redeem marks are filled alike.
#[test]
fn a_double_redeem_shows_one_token_colour_in_two_lanes() {
    let run = refresh_race_none("table");
    let text = std::fs::read_to_string(run.html.join("run-000-double_redeem.svg")).unwrap();
    let doc = parse(&text);
    let steps: Vec<u64> = doc
        .descendants()
        .filter(|n| class_is(n, "step"))
        .map(|n| n.attribute("data-rec").unwrap().parse().unwrap())
        .collect();
    let mut fill_of: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for n in doc.descendants().filter(|n| class_is(n, "mark")) {
        let rec: u64 = n.attribute("data-rec").unwrap().parse().unwrap();
        let title = n
            .children()
            .find(|c| c.has_tag_name("title"))
            .and_then(|c| c.text())
            .unwrap_or_default()
            .to_string();
        let fill = n
            .children()
            .find(|c| c.has_tag_name("path"))
            .and_then(|c| c.attribute("fill"))
            .unwrap_or_default()
            .to_string();
        fill_of.insert(rec, (title, fill));
    }
    let (t1, f1) = &fill_of[&steps[0]];
    let (t2, f2) = &fill_of[&steps[1]];
    assert!(
        t1.contains("redeemed") && t2.contains("redeemed"),
        "{t1} / {t2}"
    );
    assert!(f1.starts_with('#'), "{f1}");
    assert_eq!(f1, f2, "the same token, the same colour");
    // ...and different processes (lanes) redeemed it.
    let who = |t: &str| t.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert_ne!(who(t1), who(t2), "{t1} / {t2}");
}

#[test]
fn no_html_report_file_holds_a_whole_token_and_markdown_links_the_svgs() {
    let run = refresh_race_none("markdown");
    for f in files(&run.html) {
        let text = std::fs::read_to_string(&f).unwrap();
        for t in &run.tokens {
            assert!(
                !text.contains(t.as_str()),
                "{} holds a whole token",
                f.display()
            );
        }
        // Nothing token-shaped at all: the longest run of token characters stays short.
        let longest = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest < 40, "{}: a {longest}-char run", f.display());
    }
    let svg = run.html.join("run-000-double_redeem.svg");
    assert!(
        run.out.contains(&format!("[timeline]({})", svg.display())),
        "{}",
        run.out
    );
}

/// `matrix --html`: every anomalous cell links to an anchor on the page, clean cells link
/// nowhere, and every timeline the page shows exists as a well-formed SVG.
#[test]
fn matrix_html_links_each_anomalous_cell_to_its_timelines() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("html");
    let out = Command::new(env!("CARGO_BIN_EXE_poolcheck"))
        .args(["matrix", "--quick", "--strategies", "none,flock-txn"])
        .args(["--scenarios", "refresh-race,lost-update", "--html"])
        .arg(&html)
        .output()
        .expect("poolcheck runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = std::fs::read_to_string(html.join("index.html")).unwrap();
    let doc = parse(&index);
    let ids: BTreeSet<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("id"))
        .collect();
    let cells: Vec<roxmltree::Node<'_, '_>> =
        doc.descendants().filter(|n| n.has_tag_name("td")).collect();
    assert_eq!(cells.len(), 4);
    let mut linked = 0;
    for td in &cells {
        let text: String = td
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .concat();
        let links: Vec<&str> = td
            .descendants()
            .filter_map(|n| n.attribute("href"))
            .collect();
        // A pinned cell carries its mark: `clean (expected)` is still clean.
        if text == "clean" || text.starts_with("clean (") {
            assert!(links.is_empty(), "{text}: {links:?}");
        } else {
            assert_eq!(links.len(), 1, "{text}");
            assert!(ids.contains(&links[0][1..]), "{} has no target", links[0]);
            linked += 1;
        }
    }
    assert!(linked >= 2, "none finds anomalies in both scenarios");
    for src in doc
        .descendants()
        .filter(|n| n.has_tag_name("img"))
        .filter_map(|n| n.attribute("src"))
    {
        let svg = std::fs::read_to_string(html.join(src)).unwrap();
        parse(&svg);
    }
}
