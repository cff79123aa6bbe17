#!/usr/bin/env python3
"""A small correct pool whose file I/O the syscall observer must not mistake (standard library
only; a poolcheck subject, judged with ``poolcheck --observe syscalls``).

Its pool logic is ``keepfd_pool.py``'s (every operation under an exclusive ``flock`` on the
hello's lock file, a fresh read and the write inside it); only how it reads and writes the
store differs, by switch:

* ``--sniff``: before each read, opens the store, reads its first 16 bytes (does it start with
  ``{``?) and closes it; then reads the store whole. The 16 bytes are not a read of the store.
* ``--copyfile``: writes a temp file, then copies it over the store in place with
  ``shutil.copyfile`` (``sendfile(2)`` on Linux: no ``write`` call carries the bytes). Safe
  against readers because every reader holds the lock.
* ``--watcher``: a background thread re-reads the store without a lock in 32-byte chunks, 5 ms
  apart, and never writes it back (correct: writes replace the file by rename, so a descriptor
  reads one whole version); the process exits when stdin closes, usually in the middle of one
  of those reads.

Without ``--copyfile`` a write is a temp file, ``fsync`` and ``rename``. It reports no events
and no pauses. ``harness/tests/observe.rs`` pins that the observer judges each mode clean in
``refresh-race`` and ``lost-update``.
"""
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keepfd_pool  # noqa: E402
import poolcheck_adapter as pc  # noqa: E402

FLAGS = {a.lstrip("-") for a in sys.argv[1:]}


class Pool(keepfd_pool.Pool):
    def __init__(self, hello, hooks, http):
        super().__init__(hello, hooks, http)
        if "watcher" in FLAGS:
            threading.Thread(target=self.watch, daemon=True).start()

    def watch(self):
        while True:
            try:
                with open(self.store, "rb", buffering=0) as f:
                    while f.read(32):
                        time.sleep(0.005)
            except OSError:
                pass
            time.sleep(0.005)

    def read(self):
        if "sniff" in FLAGS:
            with open(self.store, "rb", buffering=0) as f:
                if f.read(16)[:1] != b"{":
                    raise pc.ReadFailed("the store does not start with {")
        with open(self.store, "rb") as f:
            return f.read()

    def write(self, out):
        tmp = "%s.tmp.%d" % (self.store, os.getpid())
        with open(tmp, "wb") as f:
            f.write(out)
            f.flush()
            os.fsync(f.fileno())
        if "copyfile" in FLAGS:
            shutil.copyfile(tmp, self.store)
            os.unlink(tmp)
        else:
            os.rename(tmp, self.store)


if __name__ == "__main__":
    sys.exit(pc.serve(Pool, subject="copyio-pool", mode=",".join(sorted(FLAGS)) or None,
                      silent=True))
