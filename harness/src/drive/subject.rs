//! External subjects: a credential pool written in any language, driven over the
//! `poolcheck-subject/1` protocol (newline-delimited JSON on the subject's stdin and stdout;
//! see `docs/subjects.md`).
//!
//! The fork driver still forks one worker per role instance. A worker whose role is a pool
//! role (`gateway`, `cli`, `auth-add`) does not run pool-core: it starts the subject command
//! (`sh -c CMD`, in its own process group), sends it a `hello`, and then plays the role with
//! the plan's role player (`plan::roles::play_role`, as on pool-core), this module turning
//! each pool operation into a request ([`PoolUnderTest`]). The worker is the subject's proxy
//! in the run: it stamps the operation boundaries, records the events the subject streams
//! (reads, writes, refreshes, in pool-core's [`Event`] shapes, so the same checkers judge
//! them), and applies the scenario's pause rules when the subject announces a pause point (the
//! hello lists the points that have any). `external-cli` roles stay ours.
//!
//! Guarantees:
//! - A subject that exits, stops answering for longer than the per-request timeout, or writes
//!   a line that is not a protocol message ends that worker only: the worker records a
//!   [`Ev::ProcExit`] whose status starts with `subject ` and names the command, the process,
//!   the line number of the subject's stdout and the problem, kills the subject's process
//!   group and exits 5. The other processes' histories, the ledger and the final store are
//!   judged as usual, and the run's verdict is `error` (`report::judge`).
//! - Each life of a process (the nemesis restarts killed ones) numbers its operations in its
//!   own range (`plan::first_op_id`), as pool-core workers do, so two lives never merge.
//! - Time spent in a pause (a rendezvous) does not count against the subject's timeout.
//! - A role `script` op the protocol has no request for (`exhaust:N`, `remove:N`, `reset`)
//!   ends the worker the same way: a subject never silently plays another role.
//!
//! Not guaranteed: the exact time of a streamed event (it is stamped when the worker reads
//! it, a few microseconds after the subject wrote it).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use pool_core::real::Hooks;
use pool_core::world::{Event, OpKind, Pause, ReadOutcome, RefreshOutcome};
use pool_core::NewEntry;
use serde_json::{json, Value};

use super::hooks::WorkerHooks;
use crate::history::Ev;
use crate::plan::roles::{Broken, PoolUnderTest};
use crate::plan::{first_op_id, pool_config, WorkerPlan};
use crate::scenario::{RoleKind, Scenario};

/// The protocol name and version every message exchange starts with.
pub const PROTOCOL: &str = "poolcheck-subject/1";

/// How to start and talk to a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectSpec {
    /// What reports call it (`--subject NAME=CMD`; `subject` when unnamed).
    pub name: String,
    /// A shell command line, run with `sh -c` in the harness's working directory.
    pub command: String,
    /// How long the subject may take to answer one request (pauses excluded).
    pub timeout: Duration,
    /// Run it under the syscall observer (`--observe syscalls`, [`crate::observe`]): its
    /// reads, writes, refreshes and pause points come from its system calls.
    pub observe: bool,
}

impl SubjectSpec {
    pub fn new(command: impl Into<String>) -> SubjectSpec {
        SubjectSpec {
            name: "subject".into(),
            command: command.into(),
            timeout: Duration::from_secs(10),
            observe: false,
        }
    }
}

/// Whether a role is played by the subject (pool roles) or by the harness (`external-cli`).
pub fn plays(kind: RoleKind) -> bool {
    kind != RoleKind::ExternalCli
}

enum Line {
    Text(usize, String),
    Eof(usize),
    Failed(usize, String),
    /// What the syscall observer saw the subject do.
    Observed(crate::observe::Report),
}

/// A running subject and the conversation with it.
struct Conn<'h, 'a> {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    timeout: Duration,
    hooks: &'h WorkerHooks<'a>,
    stderr_path: std::path::PathBuf,
    /// Harness-assigned id of the operation in progress (0 outside operations).
    op: u64,
    next_op: u64,
    /// Read or write events this operation (to know whether the subject reports them).
    io_events: u32,
    /// When the subject was last sent a line: everything it reports after that happened after
    /// it (a `write_begin` is stamped here, a sound lower bound of its rename).
    last_sent_ns: u64,
    last_line: usize,
    /// Kills the subject's process group if this worker dies (dropped with the connection).
    group: crate::lifeline::GroupGuard,
    /// The syscall observer, when the subject runs under it: its events and pauses are the
    /// ones recorded and applied; what the subject reports itself is only compared with them.
    observer: Option<crate::observe::Observer>,
    check: SelfCheck,
    /// The kind of the operation in flight, and whether an observed `load_pool` has passed
    /// its `after_load` point.
    op_kind: Option<OpKind>,
    loaded: bool,
}

/// Start the subject for the worker of `plan` and greet it: the pool under test this worker's
/// role is played on ([`PoolUnderTest`]; `worker::play` plays it).
pub fn start<'h, 'a>(
    sc: &Scenario,
    plan: &WorkerPlan,
    hooks: &'h WorkerHooks<'a>,
    spec: &SubjectSpec,
    logs: &Path,
) -> Result<impl PoolUnderTest + 'h, Broken> {
    let name = format!(
        "subject '{}' (p{} {})",
        spec.command,
        plan.proc,
        plan.role.label()
    );
    Conn::start(sc, plan, hooks, spec, logs, &name)
}

impl<'h, 'a> Conn<'h, 'a> {
    fn start(
        sc: &Scenario,
        plan: &WorkerPlan,
        hooks: &'h WorkerHooks<'a>,
        spec: &SubjectSpec,
        logs: &Path,
        name: &str,
    ) -> Result<Conn<'h, 'a>, Broken> {
        let cfg = pool_config(sc, plan);
        let store = plan.dir.join("auth.json");
        let lock = plan.dir.join("auth.lock");
        let stderr_path = logs.join(format!("p{}.subject.stderr", plan.proc));
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| Broken(format!("{name}: cannot create its stderr file: {e}")))?;
        let hello = json!({
            "protocol": PROTOCOL,
            "hello": {
                "proc": plan.proc,
                "role": plan.role.kind.name(),
                "role_name": plan.role.label(),
                "store": store,
                "lock": lock,
                "issuer_url": plan.issuer_url,
                "provider": cfg.provider,
                "selection": plan.role.selection.as_deref().unwrap_or(&sc.pool.selection),
                "refresh_margin_ms": cfg.refresh_margin_ms,
                "cooldown_ms": cfg.default_cooldown_ms,
                "write_chunk": cfg.write_chunk,
                "external": cfg.external.iter().map(|x| json!({
                    "source": x.format.source(),
                    "path": x.path,
                })).collect::<Vec<_>>(),
                "seed": plan.seed,
                // The only points at which a pause does anything for this worker: a subject
                // may skip announcing the others, so its writes take as long as pool-core's.
                "pauses": hooks.points().iter().map(|p| p.name()).collect::<Vec<_>>(),
            }
        });
        // The subject's group (its shell and what the shell starts) dies with this worker: the
        // watcher leads the group before the subject exists.
        let guard = crate::lifeline::group_guard()
            .map_err(|e| Broken(format!("{name}: cannot watch it: {e}")))?;
        let mut cmd = Command::new("sh");
        crate::lifeline::bind_command(&mut cmd)
            .arg("-c")
            .arg(&spec.command)
            .env("POOLCHECK_PROTOCOL", PROTOCOL)
            .env("POOLCHECK_PROC", plan.proc.to_string())
            .env("POOLCHECK_ROLE", plan.role.kind.name())
            .env("POOLCHECK_STORE", &store)
            .env("POOLCHECK_LOCK", &lock)
            .env("POOLCHECK_ISSUER_URL", &plan.issuer_url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(guard.pgid());
        let (tx, rx) = mpsc::channel();
        let (mut child, observer) = if spec.observe {
            let obs_tx = tx.clone();
            let cfg = crate::observe::Config {
                store: store.clone(),
                external: cfg
                    .external
                    .iter()
                    .map(|x| (x.format.source().to_string(), x.path.clone()))
                    .collect(),
                issuer_port: port_of(&plan.issuer_url),
                provider: cfg.provider.clone(),
            };
            let sink = Box::new(move |r| {
                let _ = obs_tx.send(Line::Observed(r));
            });
            crate::observe::spawn(cmd, cfg, sink)
                .map(|(c, o)| (c, Some(o)))
                .map_err(|e| Broken(format!("{name}: cannot start under the observer: {e}")))?
        } else {
            let c = cmd
                .spawn()
                .map_err(|e| Broken(format!("{name}: cannot start: {e}")))?;
            (c, None)
        };
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut n = 0;
            loop {
                let mut buf = Vec::new();
                n += 1;
                let msg = match r.read_until(b'\n', &mut buf) {
                    Ok(0) => Line::Eof(n),
                    Ok(_) => Line::Text(n, String::from_utf8_lossy(&buf).into_owned()),
                    Err(e) => Line::Failed(n, e.to_string()),
                };
                let end = !matches!(msg, Line::Text(..));
                if tx.send(msg).is_err() || end {
                    return;
                }
            }
        });
        let mut c = Conn {
            name: name.to_string(),
            child,
            stdin: Some(stdin),
            lines: rx,
            timeout: spec.timeout,
            hooks,
            stderr_path,
            op: 0,
            // A restarted process must not reuse the dead one's operation ids.
            next_op: first_op_id(plan.incarnation),
            io_events: 0,
            last_sent_ns: crate::history::now_ns(),
            last_line: 0,
            group: guard,
            observer,
            check: SelfCheck::default(),
            op_kind: None,
            loaded: false,
        };
        let reply = c.exchange(&hello, "hello")?;
        if reply.get("protocol").and_then(Value::as_str) != Some(PROTOCOL) {
            return Err(c.fail(format!(
                "answered hello at line {} without \"protocol\":\"{PROTOCOL}\": {}",
                c.last_line,
                clip(&reply.to_string())
            )));
        }
        Ok(c)
    }

    /// One pool operation: stamp its begin, exchange, stamp its end.
    fn op_request(&mut self, kind: OpKind, req: Value) -> Result<Value, Broken> {
        self.op = self.next_op;
        self.next_op += 1;
        self.io_events = 0;
        self.op_kind = Some(kind);
        self.loaded = false;
        self.self_check(0, "between operations");
        self.hooks.record(Event::OpBegin { op: self.op, kind });
        if let Some(o) = &self.observer {
            // An unmodified program has no operation boundary of its own: the worker's is
            // `op_start`, before the operation is sent.
            o.set_op(self.op);
            self.hooks.pause(Pause::OpStart);
        }
        let what = req["op"].as_str().unwrap_or("op").to_string();
        let reply = self.exchange(&req, &what);
        if let Some(o) = &self.observer {
            o.set_op(0);
            self.self_check(self.op, &what);
        }
        let (ok, error) = match &reply {
            Ok(v) => (
                ok(v),
                v.get("error").and_then(Value::as_str).map(str::to_string),
            ),
            Err(e) => (false, Some(e.0.clone())),
        };
        if let Ok(v) = &reply {
            // A black-box subject may say only that its read did not parse.
            if self.io_events == 0 && v.get("read_failed").and_then(Value::as_bool) == Some(true) {
                self.hooks.record(Event::Read {
                    op: self.op,
                    hash: String::new(),
                    outcome: ReadOutcome::Corrupt(
                        "the subject reported an unparseable read".into(),
                    ),
                    file: None,
                });
            }
        }
        self.hooks.record(Event::OpEnd {
            op: self.op,
            ok,
            error,
        });
        self.op = 0;
        self.op_kind = None;
        reply
    }

    /// Send one request and wait for its reply, recording streamed events and serving pauses.
    fn exchange(&mut self, req: &Value, what: &str) -> Result<Value, Broken> {
        self.send(req, what)?;
        loop {
            let line = match self.lines.recv_timeout(self.timeout) {
                Ok(l) => l,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fail(format!(
                        "did not answer '{what}' within {} ms (after line {} of its stdout): hung?",
                        self.timeout.as_millis(),
                        self.last_line
                    )))
                }
                Err(RecvTimeoutError::Disconnected) => Line::Eof(self.last_line + 1),
            };
            let (n, text) = match line {
                Line::Text(n, t) => (n, t),
                Line::Eof(n) => {
                    let status = self.reap();
                    return Err(self.fail(format!(
                        "closed its stdout at line {n} before answering '{what}' ({status}){}",
                        self.stderr_tail()
                    )));
                }
                Line::Failed(n, e) => {
                    return Err(self.fail(format!("line {n} of its stdout cannot be read: {e}")))
                }
                Line::Observed(r) => {
                    self.observed(r);
                    continue;
                }
            };
            self.last_line = n;
            let msg: Value = match serde_json::from_str(text.trim_end()) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return Err(self.fail(format!(
                        "line {n} of its stdout is JSON but not an object: {}",
                        clip(&text)
                    )))
                }
                Err(e) => {
                    return Err(self.fail(format!(
                        "line {n} of its stdout is not a protocol message ({e}): {}",
                        clip(&text)
                    )))
                }
            };
            if let Some(ev) = msg.get("event") {
                let ev = self.event(ev, n)?;
                self.told(ev);
            } else if let Some(p) = msg.get("pause") {
                let point = p.as_str().and_then(Pause::from_name).ok_or_else(|| {
                    self.fail(format!(
                        "line {n} of its stdout names an unknown pause point {p} (known: {})",
                        Pause::ALL
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                if self.observer.is_none() {
                    self.hooks.pause(point);
                }
                self.send(&json!({"resume": true}), "resume")?;
            } else {
                return Ok(msg);
            }
        }
    }

    /// An event the subject reported: recorded, or (observed subjects) checked.
    fn told(&mut self, ev: Event) {
        if self.observer.is_some() {
            // Observed subjects' own reports are checked, not recorded.
            self.check.told(&ev);
        } else if let Event::WriteBegin { .. } = ev {
            // The line arrived after the subject sent it, maybe after its rename: the
            // moment the subject was last sent a line is the bound that holds.
            let at = self.last_sent_ns;
            self.hooks.log().push_at(at, Ev::Pool { event: ev });
        } else {
            self.hooks.record(ev);
        }
    }

    /// Compare what the subject told with what was observed since the last comparison, and
    /// record a disagreement in the history (the run's report lists it: `report::self_check`).
    fn self_check(&mut self, op: u64, what: &str) {
        if let Some((told, seen)) = self.check.op_end() {
            self.hooks.log().push(Ev::SelfCheck {
                op,
                op_kind: what.to_string(),
                reported_not_observed: told,
                observed_not_reported: seen,
            });
        }
    }

    /// Record an observed event, or apply the pause rule the observed subject is held at.
    fn observed(&mut self, r: crate::observe::Report) {
        match r {
            crate::observe::Report::Event { t_ns, event } => {
                if matches!(event, Event::Read { .. } | Event::Write { .. }) {
                    self.io_events += 1;
                }
                self.check.saw(&event);
                self.hooks.log().push_at(t_ns, Ev::Pool { event });
            }
            crate::observe::Report::Lock {
                t_ns,
                path,
                inode,
                op,
                outcome,
            } => self.hooks.log().push_at(
                t_ns,
                Ev::Lock {
                    path,
                    inode,
                    op: op.into(),
                    outcome: outcome.into(),
                },
            ),
            crate::observe::Report::Pause { point, resume } => {
                // Every parsed store read is a candidate `after_load`; a self-reporting pool
                // announces it once, in `load_pool`.
                let applies = point != Pause::AfterLoad
                    || (self.op_kind == Some(OpKind::LoadPool)
                        && !std::mem::replace(&mut self.loaded, true));
                if applies {
                    self.hooks.pause(point);
                }
                let _ = resume.send(());
            }
        }
    }

    /// A streamed event in pool-core's shape; its `op` is the harness's current operation.
    fn event(&mut self, ev: &Value, n: usize) -> Result<Event, Broken> {
        let mut ev = ev.clone();
        let kind = ev
            .get("ev")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !matches!(kind.as_str(), "read" | "write_begin" | "write" | "refresh") {
            return Err(self.fail(format!(
                "line {n} of its stdout: event kind must be read, write_begin, write or refresh (op_begin and op_end are the harness's), not {}",
                clip(&ev.to_string())
            )));
        }
        if let Value::Object(m) = &mut ev {
            m.insert("op".into(), json!(self.op));
        }
        match serde_json::from_value::<Event>(ev) {
            Ok(e) => {
                if matches!(e, Event::Read { .. } | Event::Write { .. }) {
                    self.io_events += 1;
                }
                Ok(e)
            }
            Err(e) => Err(self.fail(format!("line {n} of its stdout: bad {kind} event: {e}"))),
        }
    }

    fn send(&mut self, msg: &Value, what: &str) -> Result<(), Broken> {
        let mut line = msg.to_string();
        line.push('\n');
        self.last_sent_ns = crate::history::now_ns();
        let sent = match self.stdin.as_mut() {
            Some(w) => w.write_all(line.as_bytes()).and_then(|()| w.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = sent {
            let status = self.reap();
            return Err(self.fail(format!(
                "closed its stdin before it was sent '{what}' (after line {} of its stdout: {e}; {status}){}",
                self.last_line,
                self.stderr_tail()
            )));
        }
        Ok(())
    }

    fn kill(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(-self.group.pgid());
        let _ = nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL);
        if self.observer.is_none() {
            let _ = self.child.wait();
        }
    }

    /// How the subject ended, if it has (the observer reaps an observed one).
    fn exited(&mut self) -> Option<String> {
        match &self.observer {
            Some(o) => o.exit_status(),
            None => match self.child.try_wait() {
                Ok(Some(s)) => Some(s.to_string()),
                _ => None,
            },
        }
    }

    /// The exit status, waiting a little for it.
    fn reap(&mut self) -> String {
        for _ in 0..100 {
            if let Some(s) = self.exited() {
                return format!("it exited: {s}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        "it is still running".into()
    }

    fn stderr_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        let tail: Vec<&str> = s.lines().rev().take(3).collect();
        if tail.is_empty() {
            String::new()
        } else {
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("; its stderr ends: {}", clip(&tail.join(" | ")))
        }
    }

    fn unsupported(&self, op: &str) -> Broken {
        self.fail(format!(
            "cannot play the script op '{op}': {PROTOCOL} has no request for it (script ops a subject plays: use, add)"
        ))
    }

    fn fail(&self, msg: String) -> Broken {
        Broken(format!("{} {msg}", self.name))
    }
}

/// The subject as the pool under test: each pool operation is one request, stamped by the
/// harness ([`Conn::op_request`]); the use of a credential is the subject's own API call.
/// Script ops the protocol has no request for (`exhaust:N`, `remove:N`, `reset`) break the
/// role: the run is an `error`, never a silent substitute.
impl PoolUnderTest for Conn<'_, '_> {
    /// The selected credential's id.
    type Selected = String;

    fn load_pool(&mut self) -> Result<bool, Broken> {
        Ok(ok(&self.op_request(
            OpKind::LoadPool,
            json!({"op": "load_pool"}),
        )?))
    }

    fn select(&mut self) -> Result<Option<String>, Broken> {
        let r = self.op_request(OpKind::Select, json!({"op": "select"}))?;
        Ok(credential_id(&r))
    }

    fn use_credential(&mut self, id: &String) -> Result<Option<(u16, Option<u64>)>, Broken> {
        let used = self.exchange(&json!({"op": "use", "credential_id": id}), "use")?;
        let status = used.get("status").and_then(Value::as_u64).unwrap_or(0);
        Ok(matches!(status, 429 | 401).then(|| {
            let reset = used.get("reset_at_ms").and_then(Value::as_u64);
            (status as u16, reset)
        }))
    }

    fn mark_exhausted_and_rotate(
        &mut self,
        id: &String,
        code: u16,
        reason: &str,
        reset_at_ms: Option<u64>,
    ) -> Result<Option<String>, Broken> {
        let req = json!({
            "op": "mark_exhausted",
            "credential_id": id,
            "code": code,
            "reason": reason,
            "reset_at_ms": reset_at_ms,
        });
        let r = self.op_request(OpKind::MarkExhausted, req)?;
        Ok(credential_id(&r))
    }

    fn add_entry(&mut self, new: NewEntry) -> Result<(), Broken> {
        let req = json!({
            "op": "add_entry",
            "label": new.label,
            "auth_type": "api_key",
            "source": new.source,
            "access_token": new.access_token,
        });
        self.op_request(OpKind::AddEntry, req)?;
        Ok(())
    }

    fn exhaust_nth(&mut self, _: u8) -> Result<(), Broken> {
        Err(self.unsupported("exhaust:N"))
    }

    fn remove_nth(&mut self, _: u8) -> Result<(), Broken> {
        Err(self.unsupported("remove:N"))
    }

    fn reset_statuses(&mut self) -> Result<(), Broken> {
        Err(self.unsupported("reset"))
    }

    /// Close stdin (the subject's cue to exit) and wait briefly for it.
    fn finish(&mut self) -> Result<(), Broken> {
        drop(self.stdin.take());
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            while let Ok(line) = self.lines.try_recv() {
                match line {
                    Line::Observed(r) => self.observed(r),
                    // Events it reports after its last reply (a write its background thread
                    // finished, a save on exit) are part of the history like any other.
                    Line::Text(n, text) => {
                        let msg = serde_json::from_str::<Value>(text.trim_end()).ok();
                        if let Some(ev) = msg.as_ref().and_then(|m| m.get("event")) {
                            let ev = self.event(ev, n)?;
                            self.told(ev);
                        }
                    }
                    Line::Eof(_) | Line::Failed(..) => {}
                }
            }
            if self.exited().is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
        Ok(())
    }

    fn abort(&mut self) {
        self.kill();
    }
}

/// The `credential_id` of a select or rotate reply (none: nothing selected).
fn credential_id(v: &Value) -> Option<String> {
    v.get("credential_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The issuer's port in its URL (`http://127.0.0.1:PORT`); 0 if it has none.
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0)
}

/// Self-check of an observed subject that also reports its events: per operation, the store
/// reads and writes (kind and hash) and token requests (token tag and outcome) it told against
/// those the observer saw. A disagreement
/// becomes an [`Ev::SelfCheck`] record ([`Conn::self_check`]).
#[derive(Default)]
struct SelfCheck {
    told: Vec<String>,
    saw: Vec<String>,
}

impl SelfCheck {
    /// `read HASH` / `write HASH` of a store read or write (`(missing)`: no file), `refresh
    /// TAG OUTCOME` of a token request. An `adopted` refresh makes no request, so the observer
    /// cannot see it, and the entry of a refresh is inferred (from its token): neither is
    /// compared.
    fn key(ev: &Event) -> Option<String> {
        if let Event::Refresh { token, outcome, .. } = ev {
            let outcome = match outcome {
                RefreshOutcome::Adopted => return None,
                RefreshOutcome::Rotated => "rotated",
                RefreshOutcome::Refused => "refused",
                RefreshOutcome::Unavailable => "unavailable",
            };
            return Some(format!("refresh {token} {outcome}"));
        }
        let (kind, hash) = match ev {
            Event::Read {
                hash, file: None, ..
            } => ("read", hash),
            Event::Write {
                hash, file: None, ..
            } => ("write", hash),
            _ => return None,
        };
        Some(format!(
            "{kind} {}",
            if hash.is_empty() { "(missing)" } else { hash }
        ))
    }

    fn told(&mut self, ev: &Event) {
        self.told.extend(Self::key(ev));
    }

    fn saw(&mut self, ev: &Event) {
        self.saw.extend(Self::key(ev));
    }

    /// An operation ended: what was told and not seen, and what was seen and not told, when
    /// either is non-empty. A subject that told nothing is not compared (it is silent).
    fn op_end(&mut self) -> Option<(Vec<String>, Vec<String>)> {
        let told = std::mem::take(&mut self.told);
        let mut only_seen = std::mem::take(&mut self.saw);
        if told.is_empty() {
            return None;
        }
        let mut only_told = Vec::new();
        for t in told {
            match only_seen.iter().position(|s| *s == t) {
                Some(i) => {
                    only_seen.remove(i);
                }
                None => only_told.push(t),
            }
        }
        (!only_told.is_empty() || !only_seen.is_empty()).then_some((only_told, only_seen))
    }
}

fn ok(v: &Value) -> bool {
    v.get("ok").and_then(Value::as_bool).unwrap_or(false)
}

/// At most 120 characters of a subject's output, on one line.
fn clip(s: &str) -> String {
    let one: String = s.trim_end().replace(['\n', '\r'], " ");
    if one.chars().count() > 120 {
        format!("{}...", one.chars().take(120).collect::<String>())
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_output_short_and_on_one_line() {
        assert_eq!(clip("a\nb\n"), "a b");
        assert_eq!(clip(&"x".repeat(200)).len(), 123);
    }

    #[test]
    fn the_self_check_names_what_was_told_and_not_seen_and_the_reverse() {
        let read = |h: &str| Event::Read {
            op: 1,
            hash: h.into(),
            outcome: ReadOutcome::Parsed,
            file: None,
        };
        let mut c = SelfCheck::default();
        c.told(&read("aaaaaaaaaaaaaaaa"));
        c.saw(&read("aaaaaaaaaaaaaaaa"));
        assert_eq!(c.op_end(), None);
        c.told(&read("aaaaaaaaaaaaaaaa"));
        c.saw(&read("bbbbbbbbbbbbbbbb"));
        c.told(&read(""));
        assert_eq!(
            c.op_end(),
            Some((
                vec!["read aaaaaaaaaaaaaaaa".to_string(), "read (missing)".into()],
                vec!["read bbbbbbbbbbbbbbbb".to_string()]
            ))
        );
        // A silent subject tells nothing: nothing to compare.
        c.saw(&read("bbbbbbbbbbbbbbbb"));
        assert_eq!(c.op_end(), None);
    }

    #[test]
    fn only_pool_roles_are_played_by_subjects() {
        assert!(plays(RoleKind::Cli) && plays(RoleKind::Gateway) && plays(RoleKind::AuthAdd));
        assert!(!plays(RoleKind::ExternalCli));
    }
}
