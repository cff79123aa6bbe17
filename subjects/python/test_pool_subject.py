"""Unit tests of the Python subject: the pool model and its poolcheck-subject/1 adapter.

Run from the repository root: python3 -m unittest discover -s subjects/python -v
(`cargo test --workspace` runs this too, from harness/tests/subject.rs).
"""

import contextlib
import io
import json
import os
import tempfile
import time
import unittest

import pool_subject as ps


class FakeIssuer:
    """Rotates refresh tokens; records every token it was asked to redeem."""

    def __init__(self):
        self.redeemed = []
        self.valid = {"R0"}
        self.n = 0

    def redeem(self, rt):
        self.redeemed.append(rt)
        if rt not in self.valid:
            return "refused", "invalid_grant"
        self.valid.discard(rt)
        self.n += 1
        new = "R%d" % self.n
        self.valid.add(new)
        return "ok", {"access_token": "A%d" % self.n, "refresh_token": new,
                      "expires_in": 3600, "token_type": "Bearer"}

    def use(self, credential):
        return 200, None


class Recorder(ps.NullHooks):
    def __init__(self):
        self.events, self.pauses = [], []

    def event(self, ev):
        self.events.append(ev)

    def pause(self, point):
        self.pauses.append(point)


def entry(eid, auth_type="api_key", **kw):
    e = {"id": eid, "label": eid, "auth_type": auth_type, "priority": kw.pop("priority", 0),
         "source": "manual", "access_token": "key-" + eid, "refresh_token": None,
         "expires_at_ms": None, "request_count": 0}
    e.update({k: None for k in ps.STATUS_FIELDS})
    e.update(kw)
    return e


class PoolTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.store = os.path.join(self.dir.name, "auth.json")
        self.lock = os.path.join(self.dir.name, "auth.lock")

    def tearDown(self):
        self.dir.cleanup()

    def put(self, entries):
        doc = {"version": 1, "credential_pool": {"anthropic": entries}, "providers": {}}
        with open(self.store, "w") as f:
            json.dump(doc, f)

    def disk(self):
        with open(self.store, "rb") as f:
            return f.read()

    def pool(self, hooks=None, issuer=None, **kw):
        return ps.CredentialPool(self.store, self.lock, "anthropic", issuer, hooks, **kw)

    def test_digests_have_poolchecks_shapes(self):
        self.assertEqual(len(ps.content_hash(b"x")), 16)
        self.assertRegex(ps.tag("secret-token"), r"^t:[0-9a-f]{8}$")
        self.assertNotIn("secret", ps.tag("secret-token"))

    def test_select_picks_the_lowest_priority_usable_entry(self):
        now = ps.now_ms()
        self.put([entry("aaaaaa", priority=0, last_status="exhausted", last_status_at=now,
                        last_error_reset_at=now + 60_000),
                  entry("bbbbbb", priority=1)])
        p = self.pool()
        p.load_pool()
        self.assertEqual(p.select()["id"], "bbbbbb")

    def test_a_write_reports_the_hash_of_the_bytes_and_its_base(self):
        self.put([entry("aaaaaa")])
        loaded = ps.content_hash(self.disk())
        rec = Recorder()
        p = self.pool(rec)
        p.load_pool()
        new_id = p.add_entry("k2", "api_key", "manual", "key-2")
        writes = [e for e in rec.events if e["ev"] == "write"]
        self.assertEqual(len(writes), 1)
        self.assertEqual(writes[0]["hash"], ps.content_hash(self.disk()))
        self.assertEqual(writes[0]["base"], loaded)
        self.assertEqual([s["id"] for s in writes[0]["entries"]], ["aaaaaa", new_id])
        self.assertNotIn("key-2", json.dumps(rec.events))  # secrets only as tags

    def test_a_store_the_pool_creates_is_private(self):
        for flock in (False, True):
            if os.path.exists(self.store):
                os.remove(self.store)
            p = self.pool(flock_per_write=flock)
            p.load_pool()
            p.add_entry("k", "api_key", "manual", "key")
            self.assertEqual(os.stat(self.store).st_mode & 0o777, 0o600, "flock=%s" % flock)

    def test_an_unparseable_store_is_a_failed_read(self):
        with open(self.store, "w") as f:
            f.write('{"version": 1, "credential_po')
        rec = Recorder()
        reply = ps.handle(self.pool(rec), {"op": "load_pool"})
        self.assertEqual(reply["ok"], False)
        self.assertTrue(reply["read_failed"])
        self.assertEqual(rec.events[0]["outcome"]["kind"], "corrupt")

    def race(self, **kw):
        """Two processes load R0; the first refreshes; then the second selects."""
        self.put([entry("aaaaaa", "oauth", access_token="A0", refresh_token="R0",
                        expires_at_ms=ps.now_ms())])
        issuer = FakeIssuer()
        p, q = self.pool(issuer=issuer, **kw), self.pool(issuer=issuer, **kw)
        p.load_pool()
        q.load_pool()
        self.assertEqual(p.select()["access_token"], "A1")
        chosen = q.select()
        return issuer, chosen

    def test_as_of_8040_a_stale_snapshot_spends_the_token_again(self):
        issuer, chosen = self.race()
        self.assertEqual(issuer.redeemed, ["R0", "R0", "R0"])  # refused, then at endpoint 2
        self.assertIsNone(chosen)  # refused: benched
        self.assertIn(b'"refresh_token": "R0"', self.disk())  # and R0 written back over R1

    def test_serialized_refresh_adopts_the_peers_rotation_instead(self):
        issuer, chosen = self.race(serialized_refresh=True)
        self.assertEqual(issuer.redeemed, ["R0"])
        self.assertEqual(chosen["access_token"], "A1")
        self.assertIn(b'"refresh_token": "R1"', self.disk())

    def test_a_refused_serialized_refresh_with_nothing_newer_is_dead(self):
        self.put([entry("aaaaaa", "oauth", access_token="A0", refresh_token="RX",
                        expires_at_ms=ps.now_ms())])
        p = self.pool(issuer=FakeIssuer(), serialized_refresh=True)
        p.load_pool()
        self.assertIsNone(p.select())
        self.assertIn(b'"last_status": "dead"', self.disk())

    def test_an_exhausted_entry_is_resynced_from_the_other_clis_file(self):
        ext = os.path.join(self.dir.name, "claude_code.credentials.json")
        with open(ext, "w") as f:
            json.dump({"claudeAiOauth": {"accessToken": "A9", "refreshToken": "R9",
                                         "expiresAt": ps.now_ms() + 3_600_000, "scopes": ["x"]}},
                      f)
        now = ps.now_ms()
        self.put([entry("aaaaaa", "oauth", source="claude_code", access_token="A0",
                        refresh_token="R0", expires_at_ms=now, last_status="exhausted",
                        last_status_at=now, last_error_reset_at=now + 60_000)])
        rec = Recorder()
        p = self.pool(rec, external={"claude_code": ext})
        p.load_pool()
        self.assertEqual(p.select()["access_token"], "A9")
        self.assertIn("between_persists", rec.pauses)
        self.assertIn(b'"refresh_token": "R9"', self.disk())
        # One write for the re-sync, one more because a status was cleared (k + 1).
        self.assertEqual(len([e for e in rec.events if e["ev"] == "write"]), 2)

    def test_merge_keeps_a_peers_new_entry_and_plain_writes_drop_it(self):
        for merge, kept in ((False, False), (True, True)):
            self.put([entry("aaaaaa"), entry("bbbbbb", priority=1)])
            p, q = self.pool(merge=merge), self.pool(merge=merge)
            p.load_pool()
            q.load_pool()
            new_id = q.add_entry("k3", "api_key", "manual", "key-3")
            p.mark_exhausted("aaaaaa", 429, "rate_limited")
            self.assertEqual(new_id.encode() in self.disk(), kept, "merge=%s" % merge)

    def test_merge_keeps_every_resync_of_one_pass_in_its_later_writes(self):
        # seed-8040's select under --merge: two exhausted Codex entries re-synced from the
        # Codex CLI's file, one write each. The merge must not detach the snapshot's entries
        # from the pass holding them: the second write holds both re-synced entries (as
        # pool-core's merge-on-write writes them), and so does the store at the end.
        ext = os.path.join(self.dir.name, "codex.credentials.json")
        with open(ext, "w") as f:
            json.dump({"tokens": {"access_token": "A9", "refresh_token": "R9",
                                  "expires_at_ms": ps.now_ms() + 3_600_000}}, f)
        now = ps.now_ms()
        cooling = dict(auth_type="oauth", expires_at_ms=now + 3_600_000, last_status="exhausted",
                       last_status_at=now / 1000, last_error_reset_at=(now + 60_000) / 1000)
        doc = {"version": 1, "credential_pool": {"openai-codex": [
            entry("aaaaaa", access_token="A0", refresh_token="R0", **cooling),
            entry("bbbbbb", priority=1, access_token="A1", refresh_token="R1", **cooling)]}}
        with open(self.store, "w") as f:
            json.dump(doc, f)
        rec = Recorder()
        p = ps.CredentialPool(self.store, self.lock, "openai-codex", None, rec, merge=True,
                              external={"codex": ext})
        p.load_pool()
        self.assertEqual(p.select()["id"], "aaaaaa")
        writes = [e["entries"] for e in rec.events if e["ev"] == "write"]
        self.assertEqual(len(writes), 3)  # one per re-sync, one for the cleared statuses
        self.assertEqual([(e["refresh"], e["status"]) for e in writes[1]],
                         [(ps.tag("R9"), None)] * 2)
        final = json.loads(self.disk())["credential_pool"]["openai-codex"]
        self.assertEqual([e["refresh_token"] for e in final], ["R9", "R9"])

    def test_upstream_main_adds_a_peers_new_entry_but_its_snapshot_wins_for_its_own_ids(self):
        now = ps.now_ms()
        self.put([entry("aaaaaa"), entry("bbbbbb", priority=1)])
        p, q = self.pool(upstream_main=True), self.pool(upstream_main=True)
        p.load_pool()
        q.load_pool()
        new_id = q.add_entry("k3", "api_key", "manual", "key-3")
        q.mark_exhausted("bbbbbb", 429, "rate_limited", now + 60_000)
        p.mark_exhausted("aaaaaa", 429, "rate_limited", now + 60_000)
        final = {e["id"]: e for e in json.loads(self.disk())["credential_pool"]["anthropic"]}
        self.assertIn(new_id, final)  # the id p's snapshot lacked is added
        self.assertIsNone(final["bbbbbb"]["last_status"])  # q's cooldown erased
        self.assertEqual(final["aaaaaa"]["last_status"], "exhausted")
        self.assertEqual(os.stat(self.store).st_mode & 0o777, 0o600)  # renamed into place

    def test_upstream_main_serializes_refresh_in_the_codex_pool_only(self):
        issuer, chosen = self.race(upstream_main=True)  # the anthropic pool: blind
        self.assertEqual(issuer.redeemed, ["R0", "R0", "R0"])  # refused, then at endpoint 2
        self.assertIsNone(chosen)
        self.dir.cleanup()
        self.setUp()
        codex = dict(auth_type="oauth", access_token="A0", refresh_token="R0",
                     expires_at_ms=ps.now_ms())
        with open(self.store, "w") as f:
            json.dump({"version": 1, "credential_pool": {"openai-codex": [
                entry("aaaaaa", **codex)]}}, f)
        issuer = FakeIssuer()
        p, q = [ps.CredentialPool(self.store, self.lock, "openai-codex", issuer,
                                  upstream_main=True) for _ in range(2)]
        p.load_pool()
        q.load_pool()
        self.assertEqual(p.select()["access_token"], "A1")
        self.assertEqual(q.select()["access_token"], "A1")  # adopted under the flock
        self.assertEqual(issuer.redeemed, ["R0"])

    def test_upstream_main_marks_the_presync_copy_when_a_resynced_refresh_fails(self):
        ext = os.path.join(self.dir.name, "claude_code.credentials.json")
        with open(ext, "w") as f:  # the other CLI's token: expiring, and spent (refused)
            json.dump({"claudeAiOauth": {"accessToken": "A9", "refreshToken": "R9",
                                         "expiresAt": ps.now_ms()}}, f)
        now = ps.now_ms()
        self.put([entry("aaaaaa", "oauth", source="claude_code", access_token="A0",
                        refresh_token="R0", expires_at_ms=now, last_status="exhausted",
                        last_status_at=now / 1000, last_error_reset_at=(now + 60_000) / 1000)])
        issuer = FakeIssuer()
        p = self.pool(issuer=issuer, upstream_main=True, external={"claude_code": ext})
        p.load_pool()
        self.assertIsNone(p.select())
        self.assertEqual(issuer.redeemed, ["R9", "R9"])
        final = json.loads(self.disk())["credential_pool"]["anthropic"][0]
        # The pre-sync entry (R0) is marked exhausted: the pass rolled its own sync back.
        self.assertEqual((final["refresh_token"], final["last_status"]), ("R0", "exhausted"))

    def test_upstream_main_takes_no_other_switch(self):
        self.assertEqual(ps.mode(ps.parse_args(["--upstream-main"])), "upstream-main")
        err = io.StringIO()
        with self.assertRaises(SystemExit), contextlib.redirect_stderr(err):
            ps.parse_args(["--upstream-main", "--merge"])
        self.assertIn("drop --merge", err.getvalue())

    def test_batched_writes_once_per_operation(self):
        now = ps.now_ms()
        old = now - 10 * 3_600_000
        self.put([entry("aaaaaa", last_status="exhausted", last_status_at=old),
                  entry("bbbbbb", priority=1)])
        for batched, writes in ((False, 2), (True, 1)):
            rec = Recorder()
            p = self.pool(rec, batched=batched, selection="round_robin")
            p.load_pool()
            p.select()  # clears an expired cooldown (1 write) and rotates (1 write)
            n = len([e for e in rec.events if e["ev"] == "write"])
            self.assertEqual(n, writes, "batched=%s" % batched)


class ProtocolTest(unittest.TestCase):
    def test_a_complete_exchange(self):
        with tempfile.TemporaryDirectory() as d:
            store = os.path.join(d, "auth.json")
            with open(store, "w") as f:
                json.dump({"version": 1, "credential_pool": {"anthropic": [entry("aaaaaa")]}}, f)
            hello = {"protocol": ps.PROTOCOL, "hello": {
                "proc": 1, "role": "cli", "store": store, "lock": os.path.join(d, "auth.lock"),
                "issuer_url": "http://127.0.0.1:9", "provider": "anthropic"}}
            resume = {"resume": True}
            # load_pool pauses at op_start and after_load; select at op_start.
            lines = [hello, {"op": "load_pool"}, resume, resume, {"op": "select"}, resume]
            inp = io.StringIO("".join(json.dumps(m) + "\n" for m in lines))
            out = io.StringIO()
            self.assertEqual(ps.serve(ps.parse_args([]), inp, out), 0)
            msgs = [json.loads(m) for m in out.getvalue().splitlines()]
            self.assertEqual(msgs[0]["protocol"], ps.PROTOCOL)
            self.assertTrue(msgs[0]["ok"])
            pauses = [m["pause"] for m in msgs if "pause" in m]
            self.assertEqual(pauses, ["op_start", "after_load", "op_start"])
            reads = [m["event"] for m in msgs if "event" in m]
            self.assertEqual(reads[0]["outcome"], {"kind": "parsed"})
            replies = [m for m in msgs[1:] if "event" not in m and "pause" not in m]
            self.assertEqual(replies[0], {"ok": True, "entries": 1})
            self.assertEqual(replies[1]["credential_id"], "aaaaaa")
            self.assertEqual(replies[1]["access"], ps.tag("key-aaaaaa"))

    def test_pause_waits_for_resume(self):
        inp = io.StringIO('{"resume": true}\n')
        out = io.StringIO()
        ps.ProtocolHooks(inp, out).pause("before_redeem")
        self.assertEqual(json.loads(out.getvalue()), {"pause": "before_redeem"})
        self.assertEqual(inp.read(), "")


if __name__ == "__main__":
    unittest.main()
