//! Every `poolcheck ...` command the README and docs/*.md show parses with the current CLI, and
//! names presets, specs, scenarios and drivers that exist: a flag renamed or a scenario
//! dropped makes a stale example fail here, not in a reader's terminal.
//!
//! Commands are taken from code blocks (lines starting `poolcheck`, `$ poolcheck`, a
//! `.../poolcheck` path or `cargo run ... -p poolcheck --`, with `\` continuations) and from
//! inline code spans starting `poolcheck `. A synopsis is checked too: `[--opt X]` counts as
//! given, `a|b` as each alternative, and a placeholder (`N`, `NAME`, `FILE`, ...) is replaced by
//! a value of its kind. Only elisions (`...`, `<command>`) are skipped.

use std::path::{Path, PathBuf};

use harness::cli;
use harness::scenario::Scenario;

fn docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    let mut md: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    md.sort();
    files.extend(md);
    files
}

/// Split a command line as `sh` would (quotes, backslash escapes), up to a `#` comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    w.push(q);
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        q => w.push(q),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).extend(chars.next()),
            '#' if cur.is_none() => break,
            c if c.is_whitespace() => words.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    words
}

/// The poolcheck arguments of a command line, if it is one.
fn poolcheck_args(line: &str) -> Option<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ").trim();
    let words = shell_words(line);
    let first = words.first()?;
    if first == "poolcheck" || first.ends_with("/poolcheck") {
        return Some(words[1..].to_vec());
    }
    if first == "cargo" && words.get(1).is_some_and(|w| w == "run") {
        let dash = words.iter().position(|w| w == "--")?;
        return Some(words[dash + 1..].to_vec());
    }
    None
}

/// Every command shown in `text`: (line number, the command as written, whether it is an
/// inline span of prose).
fn commands(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending: Option<(usize, String)> = None;
    let mut push = |at: usize, cmd: String, inline: bool| out.push((at, cmd, inline));
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let l = line.trim();
            match pending.take() {
                Some((at, mut cmd)) => {
                    cmd.push(' ');
                    cmd.push_str(l.trim_end_matches('\\'));
                    if l.ends_with('\\') {
                        pending = Some((at, cmd));
                    } else {
                        push(at, cmd, false);
                    }
                }
                None if poolcheck_args(l.trim_end_matches('\\')).is_some() => {
                    let cmd = l.trim_end_matches('\\').to_string();
                    if l.ends_with('\\') {
                        pending = Some((n, cmd));
                    } else {
                        push(n, cmd, false);
                    }
                }
                None => {}
            }
            continue;
        }
        // Inline code spans.
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            let span = &after[..end];
            if span.starts_with("poolcheck ") {
                push(n, span.replace("\\|", "|"), true);
            }
            rest = &after[end + 1..];
        }
    }
    out
}

/// A value of the kind a placeholder stands for.
fn placeholder(word: &str) -> Option<&'static str> {
    Some(match word {
        "N" | "B" => "2",
        "D" => "3",
        "MS" => "100",
        "NAME" | "NAME|FILE" => "refresh-race",
        "FILE" | "OLD.json" => "some.toml",
        "S" | "SPEC" | "PRESET" | "PRESET|SPEC" => "flock-txn",
        "DIR" => "out",
        "HANDLE" => "pb=2,iteration=1",
        "CMD" => "python3 pool.py",
        "NAME=CMD" => "py=python3 pool.py",
        "I/N" | "i/n" => "1/2",
        _ => return None,
    })
}

/// The argument lists a written command stands for (a synopsis gives one per alternative);
/// `None` for an elided command.
fn expand(written: &str) -> Option<Vec<Vec<String>>> {
    let args = poolcheck_args(written)?;
    if args.iter().any(|a| a.contains("...") || a.starts_with('<')) {
        return None;
    }
    let mut lists: Vec<Vec<String>> = vec![Vec::new()];
    for a in args {
        // `[--opt X]` as given, `NAME[,NAME]` as `NAME,NAME`.
        let a: String = a.chars().filter(|c| !matches!(c, '[' | ']')).collect();
        if a.is_empty() {
            continue;
        }
        let value = |x: &str| -> String {
            match placeholder(x) {
                Some(v) => v.to_string(),
                None if x.contains(',') && !x.contains(' ') => x
                    .split(',')
                    .map(|p| placeholder(p).unwrap_or(p))
                    .collect::<Vec<_>>()
                    .join(","),
                None => x.to_string(),
            }
        };
        let alternatives: Vec<String> = match placeholder(&a) {
            Some(v) => vec![v.to_string()],
            None if a.contains('|') && !a.contains(' ') => a.split('|').map(value).collect(),
            None => vec![value(&a)],
        };
        lists = lists
            .into_iter()
            .flat_map(|l| {
                alternatives.iter().map(move |x| {
                    let mut l = l.clone();
                    l.push(x.clone());
                    l
                })
            })
            .collect();
    }
    Some(lists)
}

/// What a flag's value must name, beyond what clap checks: presets or specs, scenarios,
/// drivers.
fn check_values(args: &[String]) -> Result<(), String> {
    for (flag, value) in args.iter().zip(args.iter().skip(1)) {
        match flag.as_str() {
            "--strategy" | "--strategies" => {
                for s in pool_core::strategy::split_list(std::slice::from_ref(value)) {
                    pool_core::Strategy::parse(&s).map_err(|e| e.to_string())?;
                }
            }
            "--scenario" | "--scenarios" => {
                for s in value.split(',') {
                    // A file the example writes or brings is not here; a name must exist.
                    if !s.ends_with(".toml") && !s.contains('/') {
                        Scenario::find(s).map_err(|e| e.to_string())?;
                    }
                }
            }
            "--drivers" => {
                for d in value.split(',').filter(|d| *d != "fork") {
                    harness::drive::model::matrix_checker(d).map_err(|e| e.to_string())?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn every_documented_poolcheck_command_parses_with_the_current_cli() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in docs() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for (line, written, inline) in commands(&text) {
            let Some(lists) = expand(&written) else {
                continue;
            };
            for args in lists {
                checked += 1;
                let argv = std::iter::once("poolcheck".to_string()).chain(args.iter().cloned());
                let parsed = match cli::try_parse_from(argv) {
                    Ok(_) => Ok(()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            clap::error::ErrorKind::DisplayHelp
                                | clap::error::ErrorKind::DisplayVersion
                        ) =>
                    {
                        Ok(())
                    }
                    // Prose names a command partially (`poolcheck model --scenario FILE`
                    // searches ...): what it gives must parse, what it leaves out may be
                    // required. A code block is a whole command.
                    Err(e)
                        if inline
                            && e.kind() == clap::error::ErrorKind::MissingRequiredArgument =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
                .and_then(|()| check_values(&args));
                if let Err(e) = parsed {
                    failures.push(format!(
                        "{name}:{line}: `{written}` (as {args:?}): {}",
                        e.lines().next().unwrap_or("")
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "stale examples:\n{}",
        failures.join("\n")
    );
    // The extractor found the examples (it is not checking nothing).
    assert!(checked >= 50, "only {checked} commands found");
}

#[test]
fn the_extractor_reads_blocks_spans_synopses_and_refuses_stale_commands() {
    let text = "```sh\npoolcheck gate --quick   # per push\n$ poolcheck run --scenario x \\\n  --strategy none\ncargo run --release -p poolcheck -- matrix\n```\nsee `poolcheck model --checker loom|shuttle-pct --strategy S` and `poolcheck run ... --seed N`\n";
    let found = commands(text);
    assert_eq!(
        found.iter().map(|(l, ..)| *l).collect::<Vec<_>>(),
        [2, 3, 5, 7, 7]
    );
    assert_eq!(
        expand(&found[1].1).unwrap(),
        [["run", "--scenario", "x", "--strategy", "none"]]
    );
    assert_eq!(expand(&found[2].1).unwrap(), [["matrix"]]);
    let model = expand(&found[3].1).unwrap();
    assert_eq!(model.len(), 2);
    assert_eq!(model[1][2], "shuttle-pct");
    assert_eq!(model[1][4], "flock-txn");
    assert!(expand(&found[4].1).is_none(), "elided");
    // A stale flag and a stale scenario are caught.
    let stale = ["poolcheck", "matrix", "--driver", "fork"];
    assert!(cli::try_parse_from(stale).is_err());
    let args: Vec<String> = ["run", "--scenario", "no-such-scenario"]
        .map(String::from)
        .to_vec();
    assert!(check_values(&args).is_err());
}
