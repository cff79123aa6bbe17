#!/usr/bin/env python3
"""A poolcheck subject: a model of hermes-agent's credential pool, in Python, standard library only.

The pool (``CredentialPool``) models upstream as it was when issue #8040 was filed:

* a process-local ``threading.Lock`` around each operation (it excludes threads, not processes);
* one full-file write per change (``select`` can write several times);
* writes in place (truncate, then chunked writes), reads without any lock;
* a blind refresh: POST whatever refresh token the in-memory snapshot holds; in the
  ``anthropic`` pool a refused token is presented once more (upstream's Anthropic client
  retries at a second token endpoint).

Switches turn on the fixes, one at a time or together:

* ``--flock-per-write``: every write takes an exclusive ``flock`` on ``auth.lock``, re-reads the
  store, puts this provider's list in, and writes a 0600 temp file that is fsynced and renamed
  over ``auth.json`` (upstream's save at the time);
* ``--batched``: one write per operation instead of one per change (PR #8070's idea);
* ``--merge``: every write re-reads under the flock and merges by entry id (upstream main);
* ``--serialized-refresh``: the flock is held across re-read -> adopt a peer's rotated token or
  POST -> write, so each refresh token is POSTed at most once (upstream's Codex/xAI fix);
  a refusal with no newer token on disk marks the entry ``dead``. Every new pair then reaches
  the store under the flock, so with ``--merge`` a later write takes the store's pair for an
  entry whose tokens this snapshot did not change (a round-robin select writes its refresh,
  then its renumbering: without this the second write put back a pair a peer had rotated).

``--merge`` and ``--serialized-refresh`` imply ``--flock-per-write``.

``--upstream-main`` is a whole mode, upstream main's rules as its code does them at 88d1d620
(poolcheck's ``upstream-main`` preset, ``lock=flock,scope=write,persist=add-missing,
write=rename,refresh=openai-codex:serial+blind/retry2/presync``):

* every write takes the flock, re-reads the store and adds only the entries whose ids the
  snapshot lacks; for ids it has, the snapshot wins whole (``write_credential_pool``);
* in the ``openai-codex`` pool a refresh is serialized as with ``--serialized-refresh``;
* in every other pool a refresh is blind, a refused token is presented once more (upstream's
  Anthropic client retries at a second token endpoint), and when the refresh fails, the entry
  marked exhausted is the copy from before this pass re-synced it from the other CLI's file.

``--black-box`` makes the adapter report no events (only pauses), as a pool wrapped without
instrumentation would; ``--silent`` reports neither events nor pauses (judge it with
``poolcheck --observe syscalls``).

``--misreport-writes`` and ``--misreport-refreshes`` are test modes for poolcheck's adapter
self-check: every ``write`` event the adapter sends carries a wrong hash, every ``refresh``
event a wrong token tag (the pool itself is unchanged). Run under
``poolcheck --observe syscalls``, each shows as a self-check disagreement in the report.

The adapter at the bottom (``Adapter`` and ``serve``, a few lines over ``poolcheck_adapter``,
the protocol helper in this directory) speaks ``poolcheck-subject/1`` on stdin/stdout (see
docs/subjects.md). Without the harness, the pool works on its own with ``NullHooks``, which is
how the unit tests drive it.
"""

import argparse
import datetime
import fcntl
import json
import os
import random
import sys
import tempfile
import threading
import time

import poolcheck_adapter
from poolcheck_adapter import (PROTOCOL, NullHooks, ProtocolHooks, ReadFailed, content_hash,
                               entry_summary, tag)

# The harness's token endpoint and API, over HTTP (X-Poolcheck-Proc, no proxy).
Issuer = poolcheck_adapter.Http
STATUS_FIELDS = (
    "last_status",
    "last_status_at",
    "last_error_code",
    "last_error_reason",
    "last_error_message",
    "last_error_reset_at",
)


def now_ms():
    return int(time.time() * 1000)


def stamp_ms(v):
    """Unix ms of a stored time, in any shape upstream reads (its _parse_absolute_timestamp):
    float epoch seconds as upstream writes them, epoch ms (above 10^12), numeric or ISO-8601
    strings. None for anything else."""
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            try:
                return int(round(datetime.datetime.fromisoformat(
                    v.strip().replace("Z", "+00:00")).timestamp() * 1000))
            except ValueError:
                return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        return None
    return int(round(v if v > 1e12 else v * 1000))


def rfc3339(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def summary(e):
    return entry_summary(e["id"], e.get("last_status"), stamp_ms(e.get("last_status_at")),
                         e.get("refresh_token") or None, e.get("access_token") or None)


# External credential files (another CLI's copy of an OAuth token family): source -> the
# object holding the tokens and its access, refresh and expiry keys.
EXTERNAL_KEYS = {
    "claude_code": ("claudeAiOauth", "accessToken", "refreshToken", "expiresAt"),
    "codex": ("tokens", "access_token", "refresh_token", "expires_at_ms"),
}


class CredentialPool:
    def __init__(self, store, lock, provider, issuer=None, hooks=None, selection="fill_first",
                 refresh_margin_ms=120_000, cooldown_ms=3_600_000, write_chunk=256,
                 flock_per_write=False, batched=False, merge=False, serialized_refresh=False,
                 upstream_main=False, seed=1, external=None):
        self.store, self.lock_path, self.provider = store, lock, provider
        self.issuer, self.hooks = issuer, hooks or NullHooks()
        self.selection = selection
        self.margin, self.cooldown, self.chunk = refresh_margin_ms, cooldown_ms, max(1, write_chunk)
        codex = provider == "openai-codex"
        as_of_8040 = not (flock_per_write or batched or merge or serialized_refresh
                          or upstream_main)
        self.flock = flock_per_write or merge or serialized_refresh or upstream_main
        self.batched, self.merge = batched, merge
        self.add_missing = upstream_main
        self.serialized = serialized_refresh or (upstream_main and codex)
        # Upstream's Anthropic client retries a refused token at a second endpoint (as of
        # #8040, and in upstream main's every pool but Codex, where a failure also marks the
        # pre-sync copy of the entry); the switches model ideas, with a plain blind refresh.
        self.retry_second_endpoint = (as_of_8040 and provider == "anthropic") or \
            (upstream_main and not codex)
        self.mark_presync_copy = upstream_main and not codex
        self.rng = random.Random(seed)
        self._lock = threading.Lock()  # upstream's lock: process-local
        self.doc = {"version": 1, "credential_pool": {}}
        self.seen = None  # hash of the newest store version this snapshot absorbed
        self.dirty = False
        self.removed = set()
        # Ids whose tokens this snapshot changed (a rotation, an adoption, a re-sync) since its
        # last write: see ``_merged``.
        self.new_tokens = set()
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
            self.hooks.read(None)
            return None
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or "version" not in doc:
                raise ValueError("not a store object")
        except ValueError as e:
            detail = "the file is empty" if not data else str(e)
            self.hooks.read(data, detail)
            raise ReadFailed("%s: %s" % (self.store, detail))
        self.hooks.read(data)
        return doc, content_hash(data)

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
                elif self.add_missing:
                    doc.setdefault("credential_pool", {})[self.provider] = self._add_missing(
                        doc.get("credential_pool", {}).get(self.provider, []))
                else:
                    doc.setdefault("credential_pool", {})[self.provider] = self.entries
            doc["updated_at"] = rfc3339(now_ms())
            data = (json.dumps(doc, indent=2) + "\n").encode()
            h = content_hash(data)
            # Reported as it happens: write_begin right before the bytes can land, write right
            # after they have (before the after_rename pause), so a kill in between leaves
            # no unexplained bytes in the history.
            entries = [summary(e) for e in doc["credential_pool"][self.provider]]
            self._put(self.store, data, pauses=True,
                      written=(lambda: self.hooks.writing(data),
                               lambda: self.hooks.wrote(data, base, entries)))
            if self.merge:
                self.doc = doc
            self.seen = h
            self.new_tokens.clear()
        finally:
            if fd is not None:
                self._unflock(fd)

    def _merged(self, on_disk):
        """The snapshot's list merged with the disk's by id; the snapshot becomes it. The
        snapshot's entries are updated in place, never copied: an operation holds them across
        its writes (the pass of ``_available_entries`` re-syncs one entry after another), so a
        copy would leave its later changes out of every later write."""
        now = now_ms()
        out = list(self.entries)
        for m in out:
            d = next((d for d in on_disk if d["id"] == m["id"]), None)
            if self.serialized and d is not None and m["id"] not in self.new_tokens \
                    and d.get("refresh_token") and d["refresh_token"] != m.get("refresh_token"):
                # Refreshes are serialized: every new pair reached the store before the flock
                # was released, so the disk's pair is never older than one this snapshot did
                # not change itself. Taking it is what makes this mode flock-txn's: a later
                # write of the operation (a round-robin renumbering) must not put back the
                # pair a peer has since rotated away (a rollback, then a double redeem).
                m.update(access_token=d.get("access_token"), refresh_token=d["refresh_token"],
                         expires_at_ms=d.get("expires_at_ms"))
            if d is not None and d.get("access_token") == m.get("access_token"):
                until = self._cooldown_until(d)
                if until is not None and until > now and \
                        (stamp_ms(d.get("last_status_at")) or 0) > \
                        (stamp_ms(m.get("last_status_at")) or 0):
                    for k in STATUS_FIELDS:
                        m[k] = d.get(k)
        for d in on_disk:
            if not any(e["id"] == d["id"] for e in out) and d["id"] not in self.removed:
                out.append(d)
        self.doc.setdefault("credential_pool", {})[self.provider] = out
        return out

    def _add_missing(self, on_disk):
        """The snapshot's list, then the disk entries whose ids it lacks (upstream main's
        ``write_credential_pool``); the snapshot itself is left as it is."""
        ours = {e["id"] for e in self.entries}
        return list(self.entries) + [d for d in on_disk
                                     if d["id"] not in ours and d["id"] not in self.removed]

    def _put(self, path, data, pauses, written=None):
        """Write a whole file: in place as of #8040, temp + fsync + rename with the fixes.
        ``written``: for a store write, the (begin, done) reports, called right before the
        bytes can first be visible and the moment they all are."""
        pause = self.hooks.pause if pauses else (lambda point: None)
        begin, done = written or ((lambda: None), (lambda: None))
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

    def _sync_source(self, e):
        """The other CLI's file this pool syncs entry `e` from, as upstream does: the Codex CLI's
        file for every `openai-codex` entry holding a refresh token, Claude Code's file for the
        `anthropic` pool's `claude_code` entry; no file for any other pool."""
        if self.provider == "openai-codex":
            return "codex" if e.get("refresh_token") else None
        if self.provider == "anthropic" and e.get("source") == "claude_code":
            return "claude_code"
        return None

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
            # Times are written as upstream writes them: float epoch seconds.
            e.update(last_status="exhausted", last_status_at=time.time(), last_error_code=code,
                     last_error_reason=reason, last_error_message="HTTP %s: %s" % (code, reason),
                     last_error_reset_at=None if reset_at_ms is None else reset_at_ms / 1000)
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
        if stamp_ms(e.get("last_error_reset_at")) is not None:
            return stamp_ms(e["last_error_reset_at"])
        if stamp_ms(e.get("last_status_at")) is not None:
            return stamp_ms(e["last_status_at"]) + self.cooldown
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
            presync = None
            if e.get("last_status") == "exhausted":
                c = self._read_external(self._sync_source(e))
                if c is not None and c[1] != e.get("refresh_token"):
                    presync = dict(e)
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
            if self._expiring(e, now) and not self._refresh(e, presync):
                continue
            usable.append(e)
        if cleared:
            self._changed()
        return usable

    def _refresh(self, e, presync=None):
        """Refresh entry `e` (`presync`: `e` as it was before this pass re-synced it)."""
        if self.serialized:
            fd = self._flock()
            try:
                return self._refresh_serialized(e)
            finally:
                self._unflock(fd)
        return self._refresh_blind(e, presync)

    def _redeem(self, e):
        rt = e.get("refresh_token")
        self.hooks.pause("before_redeem")
        kind, value = self.issuer.redeem(rt)
        self.hooks.pause("after_redeem")
        outcome = {"ok": "rotated", "refused": "refused", "unavailable": "unavailable"}[kind]
        self.hooks.refreshed(e["id"], rt, outcome)
        return kind, value

    def _set_tokens(self, e, access, refresh, expires_at_ms):
        self.new_tokens.add(e["id"])
        e.update(access_token=access, refresh_token=refresh, expires_at_ms=expires_at_ms)
        for k in STATUS_FIELDS:
            e[k] = None

    def _mark(self, e, status, code, reason):
        e.update(last_status=status, last_status_at=time.time(), last_error_code=code,
                 last_error_reason=reason, last_error_message="refresh failed: %s" % reason,
                 last_error_reset_at=None)

    def _rotated(self, e, grant):
        """A successful POST: the entry takes the new pair, and so does the other CLI's file."""
        self._set_tokens(e, grant["access_token"], grant["refresh_token"],
                         now_ms() + int(grant["expires_in"]) * 1000)
        self._write_external(self._sync_source(e), e["access_token"], e["refresh_token"],
                             e["expires_at_ms"])

    def _refresh_blind(self, e, presync=None):
        """#8040: POST the snapshot's refresh token, whatever the store holds now."""
        rt = e.get("refresh_token")
        if not rt:
            return False
        kind, value = self._redeem(e)
        if kind == "refused" and self.retry_second_endpoint:
            # The second token endpoint of the same authorization server: the same refresh
            # token, presented once more.
            kind, value = self.issuer.redeem(rt)
            outcome = {"ok": "rotated", "refused": "refused", "unavailable": "unavailable"}[kind]
            self.hooks.refreshed(e["id"], rt, outcome)
        if kind == "ok":
            self._rotated(e, value)
            ok = True
        else:
            if self.mark_presync_copy and presync is not None:
                # Upstream marks the entry it held before the re-sync: the sync is rolled back.
                e.clear()
                e.update(presync)
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
        c = self._read_external(self._sync_source(e))
        if c is not None and c[1] != e.get("refresh_token"):
            return c
        return None

    def _refresh_serialized(self, e):
        """Under the flock: re-read; adopt a peer's rotation or POST; write; all before unlock."""
        c = self._peer_rotation(e)
        if c is not None:
            self.hooks.refreshed(e["id"], c[1], "adopted")
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


# Operation failures that are answered as failed operations; anything else crashes the subject.
ERRORS = (KeyError, OSError, ValueError)


class Adapter:
    """The protocol's operations on a ``CredentialPool``."""

    def __init__(self, pool):
        self.pool = pool

    def load_pool(self):
        self.pool.load_pool()
        return len(self.pool.entries)

    def select(self):
        e = self.pool.select()
        return e and e["id"]

    def mark_exhausted(self, credential_id, code, reason, reset_at_ms):
        e = self.pool.mark_exhausted(credential_id, code, reason, reset_at_ms)
        return e and e["id"]

    def use(self, credential_id):
        return self.pool.use(credential_id)

    def add_entry(self, label, auth_type, source, access_token, refresh_token, expires_at_ms):
        return self.pool.add_entry(label, auth_type, source, access_token, refresh_token,
                                   expires_at_ms)

    def access_token(self, credential_id):
        return self.pool._entry(credential_id).get("access_token") or None


def handle(pool, req):
    return poolcheck_adapter.handle(Adapter(pool), req, ERRORS)


class Misreport(poolcheck_adapter.Hooks):
    """``--misreport-writes`` / ``--misreport-refreshes``: passes everything on, but reports
    each write's hash (``writes``) or each refresh's token tag (``refreshes``) wrong."""

    def __init__(self, inner, writes, refreshes):
        self.inner, self.writes, self.refreshes = inner, writes, refreshes

    def event(self, ev):
        if self.writes and ev.get("ev") == "write":
            ev = dict(ev, hash=content_hash(b"misreported " + ev["hash"].encode()))
        if self.refreshes and ev.get("ev") == "refresh":
            ev = dict(ev, token=tag("misreported " + str(ev["token"])))
        self.inner.event(ev)

    def pause(self, point):
        self.inner.pause(point)


def serve(args, inp=sys.stdin, out=sys.stdout):
    def make(h, hooks, http):
        if args.misreport_writes or args.misreport_refreshes:
            hooks = Misreport(hooks, args.misreport_writes, args.misreport_refreshes)
        return Adapter(CredentialPool(
            h["store"], h["lock"], h["provider"], http, hooks,
            selection=h.get("selection", "fill_first"),
            refresh_margin_ms=h.get("refresh_margin_ms", 120_000),
            cooldown_ms=h.get("cooldown_ms", 3_600_000), write_chunk=h.get("write_chunk", 256),
            flock_per_write=args.flock_per_write, batched=args.batched, merge=args.merge,
            serialized_refresh=args.serialized_refresh, upstream_main=args.upstream_main,
            seed=h.get("seed", 1),
            external={x["source"]: x["path"] for x in h.get("external", [])}))
    return poolcheck_adapter.serve(make, inp, out, subject="python-pool", mode=mode(args),
                                   black_box=args.black_box, errors=ERRORS, silent=args.silent)


SWITCHES = ("flock_per_write", "batched", "merge", "serialized_refresh")


def mode(args):
    if args.upstream_main:
        return "upstream-main"
    on = [n for n in SWITCHES if getattr(args, n)]
    return ",".join(on) or "as-of-8040"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flock-per-write", action="store_true")
    p.add_argument("--batched", action="store_true")
    p.add_argument("--merge", action="store_true")
    p.add_argument("--serialized-refresh", action="store_true")
    p.add_argument("--upstream-main", action="store_true",
                   help="upstream main's rules (poolcheck's upstream-main preset); "
                        "takes none of the switches above")
    p.add_argument("--black-box", action="store_true",
                   help="report no events (pauses only), to test what poolcheck judges alone")
    p.add_argument("--silent", action="store_true",
                   help="report no events and no pauses (an uninstrumented pool), for "
                        "poolcheck --observe syscalls")
    p.add_argument("--misreport-writes", action="store_true",
                   help="report a wrong hash for every write (the pool is unchanged), to test "
                        "poolcheck's adapter self-check under --observe syscalls")
    p.add_argument("--misreport-refreshes", action="store_true",
                   help="report a wrong token tag for every refresh (the pool is unchanged), "
                        "to test poolcheck's adapter self-check under --observe syscalls")
    args = p.parse_args(argv)
    if args.upstream_main and any(getattr(args, n) for n in SWITCHES):
        p.error("--upstream-main is a whole mode: drop --%s" % next(
            n for n in SWITCHES if getattr(args, n)).replace("_", "-"))
    return args


if __name__ == "__main__":
    sys.exit(serve(parse_args(sys.argv[1:])))
