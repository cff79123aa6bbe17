#!/usr/bin/env python3
"""A small correct pool that keeps ONE descriptor on the store for its whole life (standard
library only; a poolcheck subject, judged with ``poolcheck --observe syscalls``).

* The store descriptor is opened ``O_RDWR`` once and kept (reopened only if the store's inode
  changed, i.e. someone replaced the file by rename).
* Every operation holds an exclusive ``flock`` on the hello's lock file from start to end
  (``LOCK_UN`` at the end), re-reads the store inside it and writes it back inside it.
* A read is one ``pread`` of exactly ``fstat`` size bytes at offset 0 (it never reads to EOF).
* A write is in place: ``ftruncate(fd, 0)``, then ``pwrite`` chunks of the hello's
  ``write_chunk`` bytes at increasing offsets, then ``fsync``. Safe against readers because
  every reader holds the lock (not crash-safe: a kill mid-write leaves a torn store).
* A refresh POSTs the refresh token read from disk under the lock, so each token is spent
  once among all processes.

It never reads the other CLIs' credential files (``external`` in the hello), so where their
CLIs rotate an entry's pair (``seed-8040``, ``external-cli``) it keeps a redeemed token:
``dead_credential`` and ``double_redeem`` there are this pool's, as they would be for any pool
that ignores those files.

It reports no events and no pauses (``--silent`` is accepted and changes nothing).
``harness/tests/observe.rs`` pins that the observer judges it clean in ``refresh-race`` and
``lost-update``: several in-place writes through one descriptor are several writes.
"""
import fcntl
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import poolcheck_adapter as pc  # noqa: E402


class Pool:
    def __init__(self, hello, hooks, http):
        self.http = http
        self.store, self.provider = hello["store"], hello["provider"]
        self.margin = hello.get("refresh_margin_ms", 120000)
        self.cooldown = hello.get("cooldown_ms", 3600000)
        self.round_robin = hello.get("selection") == "round_robin"
        self.chunk = max(1, hello.get("write_chunk") or 4096)
        self.lock_fd = os.open(hello["lock"], os.O_RDWR | os.O_CREAT, 0o600)
        self.fd = None
        self.snap = {}  # entry id -> access token, as of this process's last operation

    def descriptor(self):
        ino = os.stat(self.store).st_ino
        if self.fd is None or os.fstat(self.fd).st_ino != ino:
            if self.fd is not None:
                os.close(self.fd)
            self.fd = os.open(self.store, os.O_RDWR)
        return self.fd

    def read(self):
        """The store's bytes: one pread of its size through the kept descriptor."""
        fd = self.descriptor()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def write(self, out):
        """The store rewritten in place through the kept descriptor, in chunks, fsynced."""
        fd = self.descriptor()
        os.ftruncate(fd, 0)
        for at in range(0, len(out), self.chunk):
            os.pwrite(fd, out[at:at + self.chunk], at)
        os.fsync(fd)

    def txn(self, body):
        """body(entries) under the lock, on a fresh read; the store is written if it changed."""
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        try:
            data = self.read()
            try:
                doc = json.loads(data)
            except ValueError as e:
                raise pc.ReadFailed(str(e))
            before = json.dumps(doc, sort_keys=True)
            entries = doc.setdefault("credential_pool", {}).setdefault(self.provider, [])
            result = body(entries)
            if json.dumps(doc, sort_keys=True) != before:
                self.write((json.dumps(doc, indent=2) + "\n").encode())
            self.snap = {e.get("id"): e.get("access_token") for e in entries}
            return result
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def usable(self, e, now):
        status = e.get("last_status")
        if status == "dead":
            return False
        if status == "exhausted":
            reset = e.get("last_error_reset_at")
            until = reset * 1000 if reset else (e.get("last_status_at") or 0) * 1000 + self.cooldown
            if until > now:
                return False
            self.set_status(e, None, None, None)
        if e.get("auth_type") == "oauth" and (e.get("expires_at_ms") or 0) <= now + self.margin:
            return self.refresh(e)
        return True

    def refresh(self, e):
        if not e.get("refresh_token"):
            return False
        kind, val = self.http.redeem(e["refresh_token"])
        if kind == "ok":
            e.update(access_token=val["access_token"], refresh_token=val["refresh_token"],
                     expires_at_ms=int(time.time() * 1000) + int(val["expires_in"]) * 1000)
            self.set_status(e, None, None, None)
            return True
        self.set_status(e, "dead" if kind == "refused" else "exhausted", 400, str(val))
        return False

    @staticmethod
    def set_status(e, status, code, reason, reset_at=None):
        e.update(last_status=status, last_status_at=status and time.time(),
                 last_error_code=code, last_error_reason=reason, last_error_reset_at=reset_at)

    def pick(self, entries):
        now = int(time.time() * 1000)
        ok = [e for e in sorted(entries, key=lambda e: e.get("priority") or 0)
              if self.usable(e, now)]
        if not ok:
            return None
        chosen = ok[0]
        if self.round_robin:
            entries.sort(key=lambda e: (e is chosen, e.get("priority") or 0))
            for i, e in enumerate(entries):
                e["priority"] = i
        return chosen["id"]

    # ---- the adapter surface ----
    def load_pool(self):
        return self.txn(len)

    def select(self):
        return self.txn(self.pick)

    def mark_exhausted(self, eid, code, reason, reset_at_ms):
        def body(entries):
            for e in entries:
                if e.get("id") == eid:
                    self.set_status(e, "exhausted", code, reason,
                                    reset_at_ms / 1000 if reset_at_ms else None)
            return self.pick(entries)
        return self.txn(body)

    def add_entry(self, label, auth_type, source, access, refresh, exp):
        def body(entries):
            nid = "%s-%d-%d" % (label, os.getpid(), time.monotonic_ns())
            entries.append({"id": nid, "label": label, "auth_type": auth_type,
                            "source": source, "access_token": access, "refresh_token": refresh,
                            "expires_at_ms": exp, "request_count": 0,
                            "priority": 1 + max([e.get("priority") or 0 for e in entries] + [-1])})
            return nid
        return self.txn(body)

    def use(self, eid):
        return self.http.use(self.snap.get(eid) or "")

    def access_token(self, eid):
        return self.snap.get(eid)


if __name__ == "__main__":
    sys.exit(pc.serve(Pool, subject="keepfd-pool", silent=True))
