"""poolcheck_adapter: write a poolcheck subject around an existing Python pool (standard library only).

A subject is a program that speaks ``poolcheck-subject/1`` (newline-delimited JSON on stdin and
stdout; docs/subjects.md). This module is everything an adapter needs besides the pool itself:

* ``serve(make_adapter)``: the protocol loop. It reads the hello, builds your adapter with
  ``make_adapter(hello, hooks, http)``, answers the harness's requests by calling the adapter's
  methods, and turns exceptions into failed operations;
* ``Hooks``: what your pool calls where it pauses, reads the store, wrote it, and refreshed a
  token (``pause``, ``read``, ``wrote``, ``refreshed``). The protocol loop hands the adapter
  hooks that stream these to the harness; ``NullHooks`` (the base class) drops them, for
  running the pool without the harness;
* ``content_hash`` and ``tag``: the harness's hash of bytes and redacted form of a secret;
* ``Http``: an HTTP client for the harness's token endpoint and API that adds the
  ``X-Poolcheck-Proc`` header the ledger attributes requests by, and never uses a proxy from
  the environment; ``Http.opener`` is a ``urllib`` opener doing the same, to hand to a pool
  that makes its own requests.

Guarantees: every line written is one JSON object, flushed; no token is ever written (only
``tag``s). A pause whose resume never comes (the harness went away, or killed this process's
worker) exits the process with status 0, as a killed pool would simply stop.

Copy this one file next to your adapter; it has no dependencies. The adapter's methods
(all but ``load_pool``, ``select`` and ``use`` are optional; a missing one answers a failed
operation):

    load_pool()                                    -> None, or the number of entries
    select()                                       -> the chosen entry's id, or None
    use(credential_id)                             -> HTTP status, or (status, reset_at_ms)
    mark_exhausted(credential_id, code, reason, reset_at_ms) -> id selected next, or None
    add_entry(label, auth_type, source, access_token, refresh_token, expires_at_ms) -> new id
    access_token(credential_id)                    -> its access token (for the reply's tag)
"""

import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

PROTOCOL = "poolcheck-subject/1"


def content_hash(data):
    """poolcheck's content hash of bytes: 16 hex digits of SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def tag(secret):
    """poolcheck's redacted form of a secret: t: + 8 hex digits of SHA-256 (None stays None)."""
    if secret is None:
        return None
    return "t:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def entry_summary(entry_id, status=None, status_at=None, refresh_token=None, access_token=None):
    """One entry of a ``wrote`` event: id, status (ok, exhausted, dead or None), the time of
    that status (ms), and the tokens as tags."""
    return {"id": entry_id, "status": status, "status_at": status_at,
            "refresh": tag(refresh_token), "access": tag(access_token)}


class ReadFailed(Exception):
    """Raise it from an operation whose store read did not parse: the reply says
    ``read_failed`` (a torn read the harness counts even if no ``read`` event was sent)."""


class Hooks:
    """Where a pool tells the harness what it does. The base class drops everything
    (``NullHooks``); the protocol loop's subclass streams it. Subclasses override ``event``
    and ``pause`` only."""

    def event(self, ev):
        """One event in pool-core's shape (``read``, ``write_begin``, ``write`` or ``refresh``)."""

    def pause(self, point):
        """A pause point (op_start, after_load, between_persists, before_redeem, after_redeem,
        mid_write, before_rename, after_rename): the harness may hold the process here."""

    def read(self, data, error=None):
        """The store was read: ``data`` the exact bytes (None: the file was missing); pass
        ``error`` (why it did not parse) when it did not."""
        if data is None:
            self.event({"ev": "read", "hash": "", "outcome": {"kind": "missing"}})
        elif error is not None:
            self.event({"ev": "read", "hash": content_hash(data),
                        "outcome": {"kind": "corrupt", "detail": str(error)}})
        else:
            self.event({"ev": "read", "hash": content_hash(data), "outcome": {"kind": "parsed"}})

    def writing(self, data):
        """The store is about to hold ``data``: send it right before rename(2) (after any
        ``before_rename`` pause), or before the truncating open of an in-place write. A process
        killed between its rename and ``wrote`` then leaves no unexplained bytes."""
        self.event({"ev": "write_begin", "hash": content_hash(data)})

    def wrote(self, data, base, entries):
        """The store now holds ``data`` (send it right after rename(2), before any
        ``after_rename`` pause, or after the last chunk of an in-place write). ``base``: the hash (``content_hash``) of the newest store
        version the written snapshot had absorbed, or None. ``entries``: this provider's list
        as written, as ``entry_summary`` dicts."""
        self.event({"ev": "write", "hash": content_hash(data), "base": base,
                    "entries": list(entries)})

    def refreshed(self, entry_id, token, outcome):
        """After each POST of refresh ``token`` (outcome ``rotated``, ``refused`` or
        ``unavailable``), or ``adopted`` when the pool took a token a peer had rotated."""
        self.event({"ev": "refresh", "entry": entry_id, "token": tag(token), "outcome": outcome})


NullHooks = Hooks


class ProtocolHooks(Hooks):
    """Streams events to the harness and waits at pause points for its resume."""

    def __init__(self, inp, out, black_box=False, silent=False):
        # silent: no events and no pauses, as an uninstrumented pool (for --observe syscalls)
        self.inp, self.out = inp, out
        self.black_box, self.silent = black_box or silent, silent
        self.points = None  # the hello's "pauses": the only points worth announcing

    def send(self, msg):
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def event(self, ev):
        if not self.black_box:
            self.send({"event": ev})

    def pause(self, point):
        if self.silent:
            return
        if self.points is not None and point not in self.points:
            return  # the harness does nothing there: skip the round trip
        self.send({"pause": point})
        line = self.inp.readline()
        if not line:
            sys.exit(0)  # the harness went away (or the nemesis killed our worker)
        if json.loads(line).get("resume") is not True:
            raise SystemExit("expected {\"resume\": true}, got %r" % line)


class Http:
    """The harness's token endpoint and API, with ``X-Poolcheck-Proc`` on every request and
    no proxy (a proxy from the environment would hide the loopback issuer)."""

    def __init__(self, base_url, proc, timeout=10.0):
        self.base = base_url.rstrip("/")
        self.proc = str(proc)
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.opener.addheaders = [("X-Poolcheck-Proc", self.proc)]
        self.token_url = self.base + "/oauth/token"
        self.api_url = self.base + "/v1/use"

    def call(self, req):
        """(HTTP status or None when unreachable, body bytes)."""
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return None, str(e).encode()

    def redeem(self, refresh_token):
        """The refresh grant: ('ok', grant) | ('refused', error) | ('unavailable', message)."""
        body = urllib.parse.urlencode(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}).encode()
        req = urllib.request.Request(self.token_url, data=body, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        status, data = self.call(req)
        if status == 200:
            try:
                return "ok", json.loads(data)
            except ValueError as e:
                return "unavailable", "malformed token reply: %s" % e
        if status in (400, 401):
            try:
                return "refused", json.loads(data).get("error") or "invalid_grant"
            except ValueError:
                return "refused", "invalid_grant"
        return "unavailable", "token endpoint: %s" % status

    def use(self, access_token):
        """Call the API with an access token: (HTTP status or None, reset_at_ms or None)."""
        req = urllib.request.Request(self.api_url, method="GET")
        req.add_header("Authorization", "Bearer " + (access_token or ""))
        status, data = self.call(req)
        reset = None
        if status == 429:
            try:
                reset = json.loads(data).get("reset_at_ms")
            except ValueError:
                pass
        return status, reset


def _selected(adapter, credential_id):
    reply = {"ok": True, "credential_id": credential_id}
    if credential_id is not None and hasattr(adapter, "access_token"):
        reply["access"] = tag(adapter.access_token(credential_id))
    return reply


def handle(adapter, req, errors=(Exception,)):
    """One request -> its reply. ``errors``: exceptions that make a failed operation (others
    propagate: the subject crashes, and the harness reports it)."""
    op = req.get("op")
    try:
        if op == "load_pool":
            n = adapter.load_pool()
            return {"ok": True, "entries": n} if isinstance(n, int) else {"ok": True}
        if op == "select":
            return _selected(adapter, adapter.select())
        if op == "mark_exhausted" and hasattr(adapter, "mark_exhausted"):
            chosen = adapter.mark_exhausted(req["credential_id"], req.get("code", 429),
                                            req.get("reason", "rate_limited"),
                                            req.get("reset_at_ms"))
            return _selected(adapter, chosen)
        if op == "use":
            got = adapter.use(req["credential_id"])
            status, reset = got if isinstance(got, tuple) else (got, None)
            return {"ok": status == 200, "status": status, "reset_at_ms": reset}
        if op == "add_entry" and hasattr(adapter, "add_entry"):
            new_id = adapter.add_entry(req["label"], req.get("auth_type", "api_key"),
                                       req.get("source", "manual"), req.get("access_token"),
                                       req.get("refresh_token"), req.get("expires_at_ms"))
            return {"ok": True, "credential_id": new_id}
        return {"ok": False, "error": "unsupported op %r" % op}
    except ReadFailed as e:
        return {"ok": False, "read_failed": True, "error": str(e)}
    except errors as e:
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


def serve(make_adapter, inp=None, out=None, subject="python", mode=None, black_box=False,
          errors=(Exception,), silent=False):
    """The protocol loop: hello, then one reply per request until stdin closes. Returns the
    exit status (0; 2 for a protocol version it does not speak).

    ``make_adapter(hello, hooks, http)`` gets the hello's fields as a dict (``proc``, ``role``,
    ``store``, ``lock``, ``issuer_url``, ``provider``, ``selection``, ``refresh_margin_ms``,
    ``cooldown_ms``, ``write_chunk``, ``external`` (a list of ``{"source", "path"}``), ``seed``,
    ``pauses``), the hooks to give the pool (they announce only the hello's ``pauses``, when it
    lists them), and an ``Http`` for the harness's issuer."""
    inp = sys.stdin if inp is None else inp
    out = sys.stdout if out is None else out
    hooks = ProtocolHooks(inp, out, black_box, silent)
    first = inp.readline()
    if not first:
        return 0
    hello = json.loads(first)
    if hello.get("protocol") != PROTOCOL:
        hooks.send({"protocol": PROTOCOL, "ok": False, "error": "unsupported protocol"})
        return 2
    h = hello["hello"]
    if isinstance(h.get("pauses"), list):
        hooks.points = set(h["pauses"])
    adapter = make_adapter(h, hooks, Http(h["issuer_url"], h["proc"]))
    greeting = {"protocol": PROTOCOL, "ok": True, "subject": subject}
    if mode is not None:
        greeting["mode"] = mode
    hooks.send(greeting)
    for line in inp:
        if line.strip():
            hooks.send(handle(adapter, json.loads(line), errors))
    return 0
