#!/usr/bin/env python3
"""A poolcheck subject: a model of hermes-agent's credential pool, in Python, standard library only.

The pool (``CredentialPool``) models upstream as it was when issue #8040 was filed:

* a process-local ``threading.Lock`` around each operation (it excludes threads, not processes);
* one full-file write per change (``select`` can write several times);
* writes in place (truncate, then chunked writes), reads without any lock;
* a blind refresh: POST whatever refresh token the in-memory snapshot holds.

Switches turn on the fixes, one at a time or together:

* ``--flock-per-write``: every write takes an exclusive ``flock`` on ``auth.lock``, re-reads the
  store, puts this provider's list in, and writes a 0600 temp file that is fsynced and renamed
  over ``auth.json`` (upstream's save at the time);
* ``--batched``: one write per operation instead of one per change (PR #8070's idea);
* ``--merge``: every write re-reads under the flock and merges by entry id (upstream main);
* ``--serialized-refresh``: the flock is held across re-read -> adopt a peer's rotated token or
  POST -> write, so each refresh token is POSTed at most once (upstream's Codex/xAI fix);
  a refusal with no newer token on disk marks the entry ``dead``.

``--merge`` and ``--serialized-refresh`` imply ``--flock-per-write``. ``--black-box`` makes the
adapter report no events (only pauses), as a pool wrapped without instrumentation would.

The adapter at the bottom (``serve``) speaks the ``poolcheck-subject/1`` protocol on
stdin/stdout (see docs/subjects.md). Without the harness, the pool works on its own with
``NullHooks``, which is how the unit tests drive it.
"""

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

PROTOCOL = "poolcheck-subject/1"
STATUS_FIELDS = (
    "last_status",
    "last_status_at",
    "last_error_code",
    "last_error_reason",
    "last_error_message",
    "last_error_reset_at",
)


def content_hash(data):
    """poolcheck's content hash: 16 hex digits of SHA-256."""
    return hashlib.sha256(data).hexdigest()[:16]


def tag(token):
    """poolcheck's redacted form of a secret: t: + 8 hex digits of SHA-256."""
    return "t:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def now_ms():
    return int(time.time() * 1000)


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def summary(e):
    return {
        "id": e["id"],
        "status": e.get("last_status"),
        "status_at": e.get("last_status_at"),
        "refresh": tag(e["refresh_token"]) if e.get("refresh_token") else None,
        "access": tag(e["access_token"]) if e.get("access_token") else None,
    }


# External credential files (another CLI's copy of an OAuth token family): source -> the
# object holding the tokens and its access, refresh and expiry keys.
EXTERNAL_KEYS = {
    "claude_code": ("claudeAiOauth", "accessToken", "refreshToken", "expiresAt"),
    "codex": ("tokens", "access_token", "refresh_token", "expires_at_ms"),
}


class ReadFailed(Exception):
    """The store did not parse (a torn or corrupt read)."""


class NullHooks:
    """No harness: events are dropped and pause points do nothing."""

    def event(self, ev):
        pass

    def pause(self, point):
        pass


class Issuer:
    """The OAuth token endpoint and the API, over HTTP (no proxies from the environment)."""

    def __init__(self, base_url, proc, timeout=10.0):
        self.base = base_url.rstrip("/")
        self.proc = str(proc)
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, req):
        req.add_header("X-Poolcheck-Proc", self.proc)
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return None, str(e).encode()

    def redeem(self, refresh_token):
        """('ok', grant) | ('refused', error) | ('unavailable', message)."""
        body = urllib.parse.urlencode(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        ).encode()
        req = urllib.request.Request(self.base + "/oauth/token", data=body, method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        status, data = self._call(req)
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

    def use(self, credential):
        """(HTTP status or None, reset_at_ms or None)."""
        req = urllib.request.Request(self.base + "/v1/use", method="GET")
        req.add_header("Authorization", "Bearer " + credential)
        status, data = self._call(req)
        reset = None
        if status == 429:
            try:
                reset = json.loads(data).get("reset_at_ms")
            except ValueError:
                pass
        return status, reset


class CredentialPool:
    def __init__(self, store, lock, provider, issuer=None, hooks=None, selection="fill_first",
                 refresh_margin_ms=120_000, cooldown_ms=3_600_000, write_chunk=256,
                 flock_per_write=False, batched=False, merge=False, serialized_refresh=False,
                 seed=1, external=None):
        self.store, self.lock_path, self.provider = store, lock, provider
        self.issuer, self.hooks = issuer, hooks or NullHooks()
        self.selection = selection
        self.margin, self.cooldown, self.chunk = refresh_margin_ms, cooldown_ms, max(1, write_chunk)
        self.flock = flock_per_write or merge or serialized_refresh
        self.batched, self.merge, self.serialized = batched, merge, serialized_refresh
        self.rng = random.Random(seed)
        self._lock = threading.Lock()  # upstream's lock: process-local
        self.doc = {"version": 1, "credential_pool": {}}
        self.seen = None  # hash of the newest store version this snapshot absorbed
        self.dirty = False
        self.removed = set()
        self.external = dict(external or {})  # source -> path of that CLI's credentials file

    # ---- the store -------------------------------------------------------------------------

    @property
    def entries(self):
        return self.doc.setdefault("credential_pool", {}).setdefault(self.provider, [])

    def _read(self):
        """(doc, hash) or None when missing. Reports the read; raises ReadFailed."""
        try:
            with open(self.store, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.hooks.event({"ev": "read", "hash": "", "outcome": {"kind": "missing"}})
            return None
        h = content_hash(data)
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or "version" not in doc:
                raise ValueError("not a store object")
        except ValueError as e:
            detail = "the file is empty" if not data else str(e)
            self.hooks.event({"ev": "read", "hash": h,
                              "outcome": {"kind": "corrupt", "detail": detail}})
            raise ReadFailed("%s: %s" % (self.store, detail))
        self.hooks.event({"ev": "read", "hash": h, "outcome": {"kind": "parsed"}})
        return doc, h

    def _flock(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _unflock(self, fd):
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _changed(self):
        """A change to the snapshot: write now, or at the end of the operation if batched."""
        if self.batched:
            self.dirty = True
            return False
        self._write()
        return True

    def _write(self, locked=False):
        """Re-read, put this provider's list in (or merge it), write the whole file."""
        self.dirty = False
        fd = self._flock() if self.flock and not locked else None
        try:
            base = self.seen
            disk = self._read()
            if disk is None:
                doc = dict(self.doc)
            else:
                doc, h = disk
                if self.merge:
                    base = h
                    doc.setdefault("credential_pool", {})[self.provider] = self._merged(
                        doc.get("credential_pool", {}).get(self.provider, []))
                else:
                    doc.setdefault("credential_pool", {})[self.provider] = self.entries
            doc["updated_at"] = rfc3339(now_ms())
            data = (json.dumps(doc, indent=2) + "\n").encode()
            h = content_hash(data)
            # Reported as it happens: write_begin right before the bytes can land, write right
            # after they have (before the after_rename pause), so a kill in between leaves
            # no unexplained bytes in the history.
            self._put(self.store, data, pauses=True,
                      written={"ev": "write", "hash": h, "base": base,
                               "entries": [summary(e) for e in
                                           doc["credential_pool"][self.provider]]})
            if self.merge:
                self.doc = doc
            self.seen = h
        finally:
            if fd is not None:
                self._unflock(fd)

    def _merged(self, on_disk):
        now = now_ms()
        out = []
        for m in self.entries:
            e = dict(m)
            d = next((d for d in on_disk if d["id"] == m["id"]), None)
            if d is not None and d.get("access_token") == m.get("access_token"):
                until = self._cooldown_until(d)
                if until is not None and until > now and \
                        (d.get("last_status_at") or 0) > (m.get("last_status_at") or 0):
                    for k in STATUS_FIELDS:
                        e[k] = d.get(k)
            out.append(e)
        for d in on_disk:
            if not any(e["id"] == d["id"] for e in out) and d["id"] not in self.removed:
                out.append(d)
        self.doc.setdefault("credential_pool", {})[self.provider] = out
        return out

    def _put(self, path, data, pauses, written=None):
        """Write a whole file: in place as of #8040, temp + fsync + rename with the fixes.
        ``written`` (a store write's event) is sent the moment the bytes are all visible, after
        a ``write_begin`` sent right before they can first be."""
        pause = self.hooks.pause if pauses else (lambda point: None)
        events = self.hooks.event if written else (lambda ev: None)
        begin = lambda: events({"ev": "write_begin", "hash": written and written["hash"]})
        done = lambda: events(written)
        if self.flock:
            self._write_rename(path, data, pause, begin, done)
        else:
            self._write_in_place(path, data, pause, begin, done)

    def _write_in_place(self, path, data, pause, begin, done):
        begin()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for i in range(0, len(data), self.chunk):
                if i > 0:
                    pause("mid_write")
                os.write(fd, data[i:i + self.chunk])
            done()
        finally:
            os.close(fd)

    def _write_rename(self, path, data, pause, begin, done):
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".auth.", dir=d)  # mode 0600
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        pause("before_rename")
        begin()
        os.rename(tmp, path)
        done()
        pause("after_rename")
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _read_external(self, source):
        """(access, refresh, expires_at_ms) from another CLI's file, or None."""
        path = self.external.get(source)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                obj, a, r, x = EXTERNAL_KEYS[source]
                o = json.loads(f.read())[obj]
                return (o[a], o[r], o.get(x)) if o.get(a) and o.get(r) else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_external(self, source, access, refresh, expires_at_ms):
        """After a rotation, upstream also updates the other CLI's file (keeping its fields)."""
        path = self.external.get(source)
        if path is None:
            return
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
            if not isinstance(doc, dict):
                doc = {}
        except (OSError, ValueError):
            doc = {}
        obj, a, r, x = EXTERNAL_KEYS[source]
        if not isinstance(doc.get(obj), dict):
            doc[obj] = {}
        doc[obj].update({a: access, r: refresh, x: expires_at_ms})
        if source == "codex":
            doc["last_refresh"] = rfc3339(now_ms())
        self._put(path, (json.dumps(doc, indent=2) + "\n").encode(), pauses=False)

    # ---- operations ------------------------------------------------------------------------

    def _op(self, body):
        self.hooks.pause("op_start")
        with self._lock:
            result = body()
            if self.dirty:
                self._write()
            return result

    def load_pool(self):
        def body():
            got = self._read()
            self.doc, self.seen = got if got else ({"version": 1, "credential_pool": {}}, None)
            self.removed = set()
            self.hooks.pause("after_load")
        return self._op(body)

    def select(self):
        """The chosen entry (a dict) or None."""
        return self._op(self._select)

    def mark_exhausted(self, entry_id, code, reason, reset_at_ms=None):
        def body():
            e = self._entry(entry_id)
            e.update(last_status="exhausted", last_status_at=now_ms(), last_error_code=code,
                     last_error_reason=reason, last_error_message="HTTP %s: %s" % (code, reason),
                     last_error_reset_at=reset_at_ms)
            self._changed()
            return self._select()
        return self._op(body)

    def add_entry(self, label, auth_type, source, access_token=None, refresh_token=None,
                  expires_at_ms=None):
        def body():
            ids = {e["id"] for e in self.entries}
            while True:
                new_id = "%06x" % self.rng.getrandbits(24)
                if new_id not in ids:
                    break
            e = {"id": new_id, "label": label, "auth_type": auth_type,
                 "priority": max([x.get("priority", 0) for x in self.entries] + [-1]) + 1,
                 "source": source, "access_token": access_token,
                 "refresh_token": refresh_token, "expires_at_ms": expires_at_ms,
                 "request_count": 0}
            e.update({k: None for k in STATUS_FIELDS})
            self.entries.append(e)
            self._changed()
            return new_id
        return self._op(body)

    def use(self, entry_id):
        return self.issuer.use(self._entry(entry_id).get("access_token") or "")

    # ---- inside an operation ---------------------------------------------------------------

    def _entry(self, entry_id):
        for e in self.entries:
            if e["id"] == entry_id:
                return e
        raise KeyError("no entry %s" % entry_id)

    def _cooldown_until(self, e):
        if e.get("last_status") != "exhausted":
            return None
        if e.get("last_error_reset_at") is not None:
            return e["last_error_reset_at"]
        if e.get("last_status_at") is not None:
            return e["last_status_at"] + self.cooldown
        return None

    def _expiring(self, e, now):
        return e.get("auth_type") == "oauth" and e.get("expires_at_ms") is not None \
            and e["expires_at_ms"] <= now + self.margin

    def _select(self):
        usable = self._available_entries()
        if not usable:
            return None
        if self.selection == "random":
            chosen = self.rng.choice(usable)
        elif self.selection == "least_used":
            chosen = min(usable, key=lambda e: e.get("request_count", 0))
        else:
            chosen = min(usable, key=lambda e: e.get("priority", 0))
        if self.selection == "round_robin":
            rest = sorted((e for e in self.entries if e is not chosen),
                          key=lambda e: e.get("priority", 0))
            self.entries[:] = rest + [chosen]
            for i, e in enumerate(self.entries):
                e["priority"] = i
            self._changed()
        chosen["request_count"] = chosen.get("request_count", 0) + 1
        return chosen

    def _available_entries(self):
        now = now_ms()
        cleared = False
        usable = []
        for e in list(self.entries):
            if e.get("last_status") == "dead":
                continue
            # 1. An exhausted entry whose other CLI's file holds another token: re-sync, write.
            if e.get("last_status") == "exhausted":
                c = self._read_external(e.get("source"))
                if c is not None and c[1] != e.get("refresh_token"):
                    self._set_tokens(e, *c)
                    cleared = True
                    if self._changed():
                        self.hooks.pause("between_persists")
            until = self._cooldown_until(e)
            if until is not None:
                if until > now:
                    continue
                for k in STATUS_FIELDS:
                    e[k] = None
                cleared = True
            if self._expiring(e, now) and not self._refresh(e):
                continue
            usable.append(e)
        if cleared:
            self._changed()
        return usable

    def _refresh(self, e):
        if self.serialized:
            fd = self._flock()
            try:
                return self._refresh_serialized(e)
            finally:
                self._unflock(fd)
        return self._refresh_blind(e)

    def _redeem(self, e):
        rt = e.get("refresh_token")
        self.hooks.pause("before_redeem")
        kind, value = self.issuer.redeem(rt)
        self.hooks.pause("after_redeem")
        outcome = {"ok": "rotated", "refused": "refused", "unavailable": "unavailable"}[kind]
        self.hooks.event({"ev": "refresh", "entry": e["id"], "token": tag(rt), "outcome": outcome})
        return kind, value

    def _set_tokens(self, e, access, refresh, expires_at_ms):
        e.update(access_token=access, refresh_token=refresh, expires_at_ms=expires_at_ms)
        for k in STATUS_FIELDS:
            e[k] = None

    def _mark(self, e, status, code, reason):
        e.update(last_status=status, last_status_at=now_ms(), last_error_code=code,
                 last_error_reason=reason, last_error_message="refresh failed: %s" % reason,
                 last_error_reset_at=None)

    def _rotated(self, e, grant):
        """A successful POST: the entry takes the new pair, and so does the other CLI's file."""
        self._set_tokens(e, grant["access_token"], grant["refresh_token"],
                         now_ms() + int(grant["expires_in"]) * 1000)
        self._write_external(e.get("source"), e["access_token"], e["refresh_token"],
                             e["expires_at_ms"])

    def _refresh_blind(self, e):
        """#8040: POST the snapshot's refresh token, whatever the store holds now."""
        if not e.get("refresh_token"):
            return False
        kind, value = self._redeem(e)
        if kind == "ok":
            self._rotated(e, value)
            ok = True
        else:
            self._mark(e, "exhausted", 400 if kind == "refused" else 503, str(value))
            ok = False
        if self._changed():
            self.hooks.pause("between_persists")
        return ok

    def _peer_rotation(self, e):
        """A pair a peer rotated to since the snapshot: in the store, or in the other CLI's file."""
        disk = self._read()
        if disk is not None:
            d = next((d for d in disk[0].get("credential_pool", {}).get(self.provider, [])
                      if d.get("id") == e["id"]), None)
            if d and d.get("access_token") and d.get("refresh_token") \
                    and d["refresh_token"] != e.get("refresh_token"):
                return d["access_token"], d["refresh_token"], d.get("expires_at_ms")
        c = self._read_external(e.get("source"))
        if c is not None and c[1] != e.get("refresh_token"):
            return c
        return None

    def _refresh_serialized(self, e):
        """Under the flock: re-read; adopt a peer's rotation or POST; write; all before unlock."""
        c = self._peer_rotation(e)
        if c is not None:
            self.hooks.event({"ev": "refresh", "entry": e["id"], "token": tag(c[1]),
                              "outcome": "adopted"})
            self._set_tokens(e, *c)
            if not self._expiring(e, now_ms()):
                self._write_locked_or_batch()
                return True
        if not e.get("refresh_token"):
            return False
        kind, value = self._redeem(e)
        if kind == "ok":
            self._rotated(e, value)
            ok = True
        elif kind == "refused":
            c = self._peer_rotation(e)
            if c is not None:  # a newer token on disk: adopt it
                self._set_tokens(e, *c)
                ok = not self._expiring(e, now_ms())
            else:  # nothing newer: the credential is dead, do not retry it
                self._mark(e, "dead", 400, str(value))
                ok = False
        else:
            self._mark(e, "exhausted", 503, str(value))
            ok = False
        self._write_locked_or_batch()
        return ok

    def _write_locked_or_batch(self):
        # The rotation must reach the store before the flock is released, even when batched.
        self._write(locked=True)


# ---- the poolcheck-subject/1 adapter ---------------------------------------------------------


class ProtocolHooks:
    """Streams events to the harness and waits at pause points for its resume."""

    def __init__(self, inp, out, black_box=False):
        self.inp, self.out, self.black_box = inp, out, black_box

    def send(self, msg):
        self.out.write(json.dumps(msg) + "\n")
        self.out.flush()

    def event(self, ev):
        if not self.black_box:
            self.send({"event": ev})

    def pause(self, point):
        self.send({"pause": point})
        line = self.inp.readline()
        if not line:
            sys.exit(0)  # the harness went away
        if json.loads(line).get("resume") is not True:
            raise SystemExit("expected {\"resume\": true}, got %r" % line)


def handle(pool, req):
    op = req.get("op")
    try:
        if op == "load_pool":
            pool.load_pool()
            return {"ok": True, "entries": len(pool.entries)}
        if op in ("select", "mark_exhausted"):
            if op == "select":
                e = pool.select()
            else:
                e = pool.mark_exhausted(req["credential_id"], req.get("code", 429),
                                        req.get("reason", "rate_limited"), req.get("reset_at_ms"))
            if e is None:
                return {"ok": True, "credential_id": None}
            return {"ok": True, "credential_id": e["id"],
                    "access": tag(e["access_token"]) if e.get("access_token") else None}
        if op == "use":
            status, reset = pool.use(req["credential_id"])
            return {"ok": status == 200, "status": status, "reset_at_ms": reset}
        if op == "add_entry":
            new_id = pool.add_entry(req["label"], req.get("auth_type", "api_key"),
                                    req.get("source", "manual"), req.get("access_token"),
                                    req.get("refresh_token"), req.get("expires_at_ms"))
            return {"ok": True, "credential_id": new_id}
        return {"ok": False, "error": "unknown op %r" % op}
    except ReadFailed as e:
        return {"ok": False, "read_failed": True, "error": str(e)}
    except (KeyError, OSError, ValueError) as e:
        return {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}


def serve(args, inp=sys.stdin, out=sys.stdout):
    hooks = ProtocolHooks(inp, out, args.black_box)
    first = inp.readline()
    if not first:
        return 0
    hello = json.loads(first)
    if hello.get("protocol") != PROTOCOL:
        hooks.send({"protocol": PROTOCOL, "ok": False, "error": "unsupported protocol"})
        return 2
    h = hello["hello"]
    pool = CredentialPool(
        h["store"], h["lock"], h["provider"], Issuer(h["issuer_url"], h["proc"]), hooks,
        selection=h.get("selection", "fill_first"),
        refresh_margin_ms=h.get("refresh_margin_ms", 120_000),
        cooldown_ms=h.get("cooldown_ms", 3_600_000), write_chunk=h.get("write_chunk", 256),
        flock_per_write=args.flock_per_write, batched=args.batched, merge=args.merge,
        serialized_refresh=args.serialized_refresh, seed=h.get("seed", 1),
        external={x["source"]: x["path"] for x in h.get("external", [])})
    hooks.send({"protocol": PROTOCOL, "ok": True, "subject": "python-pool", "mode": mode(args)})
    for line in inp:
        if line.strip():
            hooks.send(handle(pool, json.loads(line)))
    return 0


def mode(args):
    on = [n for n in ("flock_per_write", "batched", "merge", "serialized_refresh")
          if getattr(args, n)]
    return ",".join(on) or "as-of-8040"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flock-per-write", action="store_true")
    p.add_argument("--batched", action="store_true")
    p.add_argument("--merge", action="store_true")
    p.add_argument("--serialized-refresh", action="store_true")
    p.add_argument("--black-box", action="store_true",
                   help="report no events (pauses only), to test what poolcheck judges alone")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(serve(parse_args(sys.argv[1:])))
