//! The issuer as a real HTTP/1.1 server on loopback, applying [`super::rules`].
//!
//! Endpoints:
//! - `POST /oauth/token`, form-encoded `grant_type=refresh_token&refresh_token=...` (RFC 6749
//!   §6): 200 `{"access_token","refresh_token","expires_in","token_type":"Bearer"}`, or 400
//!   `{"error":"invalid_grant","error_description":...}`; another grant type is 400
//!   `unsupported_grant_type`, a malformed request 400 `invalid_request`.
//! - `GET /v1/use` with `Authorization: Bearer X`: 200, 401 (expired, revoked, unknown, or no
//!   credential at all), or 429 `{"error":"rate_limited","reset_at_ms":N|null}`; a malformed
//!   `Authorization` header is 400 `invalid_request`.
//! - Every request may name its worker in `X-Poolcheck-Proc: N` (0 when absent; not a number
//!   is 400 `invalid_request`). That id goes into the ledger.
//!
//! Guarantees:
//! - Requests are served concurrently, one thread each. Each request first sleeps its latency
//!   (drawn uniformly from [`IssuerConfig::latency_ms`]) and only then takes the state mutex,
//!   for exactly the rule step: two refresh grants for one token sent within the latency window
//!   both reach the rules, which is the race a pool must not lose.
//! - The ledger is a JSON-lines file of [`crate::history::Record`]s, one line per rule effect,
//!   written with one `write(2)` each while the state mutex is held, in rule order, to a file
//!   opened `O_APPEND`, mode 0600. Requests that never reach the rules (malformed, wrong path)
//!   leave no ledger line. If the ledger cannot be written, every later request gets 500
//!   `server_error` rather than an answer the ledger does not show.
//! - [`Issuer::spawn_process`] serves from a forked child that stops on SIGTERM (or when the
//!   forking thread dies), holding the state mutex while it exits, so the ledger never ends in
//!   a half-written line.
//!
//! Not guaranteed: fairness or ordering between concurrent requests (that is the point), the
//! exact latency (the OS schedules the sleeps), or anything about requests that arrive after
//! [`IssuerHandle::stop`].

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use super::rules::{IssuedPair, IssuerConfig, IssuerState, LedgerSink, Rng};
use crate::history::{ProcId, Record, UseVerdict};

/// Largest request body the token endpoint reads.
const MAX_BODY: u64 = 64 * 1024;
/// How often the dispatcher looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);

/// Unix milliseconds, the clock the rules and the pool share.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A ledger sink appending one JSON line per record to a file.
pub struct FileLedger {
    path: PathBuf,
    file: File,
    failure: Option<String>,
}

impl FileLedger {
    /// Open (creating 0600 if absent) `path` for appending.
    pub fn open(path: &Path) -> io::Result<FileLedger> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open issuer ledger {}: {e}", path.display()),
                )
            })?;
        Ok(FileLedger {
            path: path.to_path_buf(),
            file,
            failure: None,
        })
    }
}

impl LedgerSink for FileLedger {
    fn append(&mut self, record: &Record) {
        if self.failure.is_some() {
            return;
        }
        let mut line = match serde_json::to_vec(record) {
            Ok(l) => l,
            Err(e) => {
                self.failure = Some(format!("cannot encode a ledger record: {e}"));
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            self.failure = Some(format!(
                "cannot append to issuer ledger {}: {e}",
                self.path.display()
            ));
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.clone()
    }
}

/// An issuer being set up: mint the run's initial families, then serve it with
/// [`Issuer::start_in_thread`] or [`Issuer::spawn_process`]; the server starts from exactly
/// this state.
pub struct Issuer {
    state: IssuerState,
}

impl Issuer {
    /// A new issuer with no families, whose ledger goes to `ledger_path` (appended to; created
    /// 0600 if absent). A bad config is `InvalidInput`.
    pub fn new(config: IssuerConfig, ledger_path: &Path) -> io::Result<Issuer> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let ledger = FileLedger::open(ledger_path)?;
        Ok(Issuer {
            state: IssuerState::new(config, Box::new(ledger)),
        })
    }

    /// Mint generation 0 of a new family, now, as the harness (process 0). The caller learns
    /// the tokens and seeds the store with them.
    pub fn mint_family(&mut self) -> IssuedPair {
        self.state.mint_family(unix_ms())
    }

    /// The rule state, for setups that need more than [`Issuer::mint_family`].
    pub fn state_mut(&mut self) -> &mut IssuerState {
        &mut self.state
    }

    /// Serve on `127.0.0.1:<ephemeral>` from threads of this process (tests, model-free demos).
    /// A process running this is multi-threaded and must not fork workers afterwards.
    pub fn start_in_thread(self) -> io::Result<IssuerHandle> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = Server::from_listener(listener, None).map_err(io::Error::other)?;
        let shared = Arc::new(Shared::new(self.state));
        let stop = Arc::new(AtomicBool::new(false));
        let join = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("issuer".into())
                .spawn(move || dispatch(server, shared, &stop))?
        };
        Ok(IssuerHandle {
            url,
            pid: None,
            thread: Some(ThreadServer { stop, join }),
        })
    }

    /// Serve from a forked child process. Binds `127.0.0.1:0` here, then forks; the child
    /// inherits the state (families minted so far), serves until SIGTERM (also sent to it by
    /// the kernel if the thread that called this dies: `PR_SET_PDEATHSIG`), and leaves with
    /// `_exit`. The parent keeps no copy of the listener or the ledger file.
    ///
    /// Precondition: the calling process is single-threaded (forking a multi-threaded process
    /// can leave the child holding locks that nobody will release). This is checked on Linux
    /// (`/proc/self/task`), and a violation is an error, not a fork.
    pub fn spawn_process(self) -> io::Result<IssuerHandle> {
        let threads = thread_count()?;
        if threads > 1 {
            return Err(io::Error::other(format!(
                "Issuer::spawn_process needs a single-threaded caller, but this process has {threads} threads"
            )));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let parent = crate::lifeline::Parent::this_process();
        // SAFETY: the process is single-threaded (checked above), so the child starts with a
        // consistent heap and no foreign locks held; it never returns into the caller's code.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => child_main(self, listener, parent),
            ForkResult::Parent { child } => {
                drop(listener);
                drop(self);
                Ok(IssuerHandle {
                    url,
                    pid: Some(child),
                    thread: None,
                })
            }
        }
    }
}

/// Threads of this process, from `/proc/self/task` (1 where that does not exist).
fn thread_count() -> io::Result<usize> {
    match std::fs::read_dir("/proc/self/task") {
        Ok(dir) => Ok(dir.count()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(e),
    }
}

fn child_main(issuer: Issuer, listener: TcpListener, parent: crate::lifeline::Parent) -> ! {
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_serve(issuer, listener, parent)
    })) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let _ = writeln!(io::stderr(), "poolcheck issuer: {e}");
            2
        }
        Err(_) => 3,
    };
    // SAFETY: _exit skips the parent's atexit handlers and buffered output, which the child
    // must not run or flush a second time.
    unsafe { libc::_exit(code) }
}

fn child_serve(
    issuer: Issuer,
    listener: TcpListener,
    parent: crate::lifeline::Parent,
) -> io::Result<()> {
    let mut term = SigSet::empty();
    term.add(Signal::SIGTERM);
    // Blocked before any thread exists, so every server thread inherits the mask and the
    // signal is only ever taken by the sigwait below.
    term.thread_block().map_err(io::Error::from)?;
    if !crate::lifeline::bind(parent, Signal::SIGTERM) {
        return Ok(()); // the parent died before we could ask to be told
    }
    let server = Server::from_listener(listener, None).map_err(io::Error::other)?;
    let shared = Arc::new(Shared::new(issuer.state));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::Builder::new()
            .name("issuer".into())
            .spawn(move || dispatch(server, shared, &stop))?;
    }
    loop {
        match term.wait() {
            Ok(Signal::SIGTERM) => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    stop.store(true, Ordering::SeqCst);
    // Hold the state (and so the ledger) while the process exits: no half-written line.
    let guard = shared.state.lock();
    std::mem::forget(guard);
    Ok(())
}

/// A running issuer. Dropping it stops it, like [`IssuerHandle::stop`].
pub struct IssuerHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    /// The serving process, for [`Issuer::spawn_process`]; `None` for a thread.
    pub pid: Option<Pid>,
    thread: Option<ThreadServer>,
}

struct ThreadServer {
    stop: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

impl IssuerHandle {
    /// Stop serving and wait: SIGTERM + `waitpid` for a process (an error unless it exited 0 or
    /// died of that SIGTERM), stop flag + join for a thread (in-flight requests finish first).
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        if let Some(pid) = self.pid.take() {
            result = stop_process(pid);
        }
        if let Some(t) = self.thread.take() {
            t.stop.store(true, Ordering::SeqCst);
            if t.join.join().is_err() {
                result = Err(io::Error::other("issuer thread panicked"));
            }
        }
        result
    }
}

fn stop_process(pid: Pid) -> io::Result<()> {
    match kill(pid, Signal::SIGTERM) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => return Err(e.into()),
    }
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) | Ok(WaitStatus::Signaled(_, Signal::SIGTERM, _)) => {
                return Ok(())
            }
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(io::Error::other(format!(
                    "issuer process {pid} exited with {code}"
                )))
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(io::Error::other(format!(
                    "issuer process {pid} died of {sig}"
                )))
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Drop for IssuerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

struct Shared {
    state: Mutex<IssuerState>,
    latency_rng: Mutex<Rng>,
    latency_ms: (u64, u64),
    rate_limit_reset_ms: Option<u64>,
}

impl Shared {
    fn new(state: IssuerState) -> Shared {
        let c = state.config();
        Shared {
            latency_rng: Mutex::new(Rng::new(c.seed ^ 0x1a7e_9c1e_5eed_5eed)),
            latency_ms: c.latency_ms,
            rate_limit_reset_ms: c.rate_limit_reset_ms,
            state: Mutex::new(state),
        }
    }

    fn sleep_latency(&self) {
        let (lo, hi) = self.latency_ms;
        if hi == 0 {
            return;
        }
        let ms = self
            .latency_rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .between(lo, hi);
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Hand each request to its own thread until `stop`; then wait for those threads.
fn dispatch(server: Server, shared: Arc<Shared>, stop: &AtomicBool) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        // Ok(None) is the poll timing out; an Err is a connection that failed before it made a
        // request, which concerns no one else.
        if let Ok(Some(request)) = server.recv_timeout(POLL) {
            let shared = shared.clone();
            // If no thread can be had, the request is dropped and tiny_http answers 500.
            if let Ok(h) = std::thread::Builder::new().spawn(move || handle(request, &shared)) {
                workers.push(h);
            }
        }
        workers.retain(|h| !h.is_finished());
    }
    for h in workers {
        let _ = h.join();
    }
}

struct Reply {
    status: u16,
    body: serde_json::Value,
    headers: Vec<(&'static str, &'static str)>,
}

impl Reply {
    fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, error: &str, description: &str) -> Reply {
        Reply::json(
            status,
            json!({"error": error, "error_description": description}),
        )
    }

    fn with(mut self, name: &'static str, value: &'static str) -> Reply {
        self.headers.push((name, value));
        self
    }
}

fn handle(mut request: Request, shared: &Shared) {
    let reply = route(&mut request, shared);
    let mut response = Response::from_data(reply.body.to_string().into_bytes())
        .with_status_code(reply.status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("Pragma", "no-cache"));
    for (name, value) in reply.headers {
        response.add_header(header(name, value));
    }
    let _ = request.respond(response);
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn header_value<'a>(request: &'a Request, name: &'static str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

fn route(request: &mut Request, shared: &Shared) -> Reply {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let method = request.method().clone();
    let proc: ProcId = match header_value(request, "X-Poolcheck-Proc").map(|v| v.trim().parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return Reply::error(
                400,
                "invalid_request",
                "X-Poolcheck-Proc is not a process number",
            )
        }
    };
    match (method, path.as_str()) {
        (Method::Post, "/oauth/token") => token(request, proc, shared),
        (Method::Get, "/v1/use") => use_endpoint(request, proc, shared),
        (_, "/oauth/token") => {
            Reply::error(405, "invalid_request", "use POST").with("Allow", "POST")
        }
        (_, "/v1/use") => Reply::error(405, "invalid_request", "use GET").with("Allow", "GET"),
        _ => Reply::error(404, "not_found", "no such endpoint"),
    }
}

fn token(request: &mut Request, proc: ProcId, shared: &Shared) -> Reply {
    if let Some(ct) = header_value(request, "Content-Type") {
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Reply::error(
                400,
                "invalid_request",
                "body must be application/x-www-form-urlencoded",
            );
        }
    }
    let mut body = Vec::new();
    if request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .is_err()
    {
        return Reply::error(400, "invalid_request", "cannot read the request body");
    }
    if body.len() as u64 > MAX_BODY {
        return Reply::error(400, "invalid_request", "request body too large");
    }
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(e) => return Reply::error(400, "invalid_request", &e),
    };
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match get("grant_type") {
        None => return Reply::error(400, "invalid_request", "grant_type is missing"),
        Some("refresh_token") => {}
        Some(_) => {
            return Reply::error(
                400,
                "unsupported_grant_type",
                "only refresh_token is supported",
            )
        }
    }
    let refresh = match get("refresh_token") {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => return Reply::error(400, "invalid_request", "refresh_token is missing"),
    };
    shared.sleep_latency();
    let Ok(mut state) = shared.state.lock() else {
        return Reply::error(500, "server_error", "issuer state poisoned");
    };
    if let Some(e) = state.ledger_failure() {
        return Reply::error(500, "server_error", &e);
    }
    let now = unix_ms();
    match state.redeem(proc, &refresh, now) {
        Ok(pair) => Reply::json(
            200,
            json!({
                "access_token": pair.access,
                "refresh_token": pair.refresh,
                "expires_in": pair.expires_in_s(now),
                "token_type": "Bearer",
            }),
        ),
        Err(reason) => Reply::error(400, reason.error(), reason.description()),
    }
}

fn use_endpoint(request: &Request, proc: ProcId, shared: &Shared) -> Reply {
    let credential = match header_value(request, "Authorization") {
        None => {
            return Reply::json(
                401,
                json!({"error": "invalid_token", "error_description": "no credential"}),
            )
            .with("WWW-Authenticate", "Bearer")
        }
        Some(v) => match v.trim().split_once(' ') {
            Some((scheme, cred))
                if scheme.eq_ignore_ascii_case("Bearer") && !cred.trim().is_empty() =>
            {
                cred.trim().to_string()
            }
            _ => {
                return Reply::error(
                    400,
                    "invalid_request",
                    "Authorization must be 'Bearer <credential>'",
                )
            }
        },
    };
    shared.sleep_latency();
    let Ok(mut state) = shared.state.lock() else {
        return Reply::error(500, "server_error", "issuer state poisoned");
    };
    if let Some(e) = state.ledger_failure() {
        return Reply::error(500, "server_error", &e);
    }
    let now = unix_ms();
    let verdict = state.use_credential(proc, &credential, now);
    drop(state);
    let invalid = |why: &str| {
        Reply::json(
            401,
            json!({"error": "invalid_token", "error_description": why}),
        )
        .with("WWW-Authenticate", "Bearer error=\"invalid_token\"")
    };
    match verdict {
        UseVerdict::Accepted => Reply::json(200, json!({"ok": true})),
        UseVerdict::RateLimited => Reply::json(
            429,
            json!({"error": "rate_limited", "reset_at_ms": shared.rate_limit_reset_ms.map(|w| now + w)}),
        ),
        UseVerdict::Expired => invalid("access token expired"),
        UseVerdict::Revoked => invalid("access token revoked"),
        UseVerdict::Unknown => invalid("credential unknown"),
    }
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.1), strictly: a bad `%` escape, invalid
/// UTF-8 or a repeated parameter (RFC 6749 §3.2) is an error.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let (k, v) = (decode(k)?, decode(v)?);
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("parameter {k} is repeated"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => out.push(b),
                    None => return Err("bad %-escape in the form body".to_string()),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "form body is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing_is_strict() {
        assert_eq!(
            parse_form(b"grant_type=refresh_token&refresh_token=a%2Bb+c").unwrap(),
            vec![
                ("grant_type".into(), "refresh_token".into()),
                ("refresh_token".into(), "a+b c".into())
            ]
        );
        assert!(parse_form(b"a=1&a=2").is_err());
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err());
        assert_eq!(parse_form(b"").unwrap(), vec![]);
    }
}
