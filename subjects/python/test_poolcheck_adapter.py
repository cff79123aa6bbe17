"""Unit tests of poolcheck_adapter, the protocol helper for Python adapters.

Run from the repository root: python3 -m unittest discover -s subjects/python -v
"""

import http.server
import io
import json
import os
import threading
import unittest
from unittest import mock

import poolcheck_adapter as pa


class Recorder(pa.Hooks):
    def __init__(self):
        self.events = []

    def event(self, ev):
        self.events.append(ev)


class HooksTest(unittest.TestCase):
    def test_hooks_build_events_in_pool_cores_shapes_and_never_carry_a_token(self):
        rec = Recorder()
        rec.read(None)
        rec.read(b"{}")
        rec.read(b"{", "truncated")
        rec.wrote(b"{}\n", None, [pa.entry_summary("a1", "ok", 5, "REFRESH", "ACCESS")])
        rec.refreshed("a1", "REFRESH", "rotated")
        self.assertEqual([e["ev"] for e in rec.events], ["read"] * 3 + ["write", "refresh"])
        self.assertEqual(rec.events[0], {"ev": "read", "hash": "", "outcome": {"kind": "missing"}})
        self.assertEqual(rec.events[1]["hash"], pa.content_hash(b"{}"))
        self.assertEqual(rec.events[2]["outcome"], {"kind": "corrupt", "detail": "truncated"})
        self.assertEqual(rec.events[3]["entries"][0]["refresh"], pa.tag("REFRESH"))
        self.assertNotIn("REFRESH", json.dumps(rec.events))
        self.assertNotIn("ACCESS", json.dumps(rec.events))
        self.assertEqual(len(pa.content_hash(b"x")), 16)
        self.assertRegex(pa.tag("x"), r"^t:[0-9a-f]{8}$")


class Seen(http.server.BaseHTTPRequestHandler):
    headers_seen = []

    def do_GET(self):
        Seen.headers_seen.append(dict(self.headers))
        self.send_response(429)
        self.end_headers()
        self.wfile.write(b'{"reset_at_ms": 7}')

    def log_message(self, *a):
        pass


class HttpTest(unittest.TestCase):
    def test_requests_carry_the_process_and_ignore_proxies(self):
        srv = http.server.HTTPServer(("127.0.0.1", 0), Seen)
        t = threading.Thread(target=srv.handle_request)
        t.start()
        try:
            url = "http://127.0.0.1:%d" % srv.server_address[1]
            # A proxy in the environment must not be used (it would hide the issuer).
            with mock.patch.dict(os.environ, {"http_proxy": "http://127.0.0.1:9",
                                              "HTTP_PROXY": "http://127.0.0.1:9"}):
                status, reset = pa.Http(url, 3).use("ACCESS")
        finally:
            t.join(10)
            srv.server_close()
        self.assertEqual((status, reset), (429, 7))
        h = {k.lower(): v for k, v in Seen.headers_seen[0].items()}
        self.assertEqual(h["x-poolcheck-proc"], "3")
        self.assertEqual(h["authorization"], "Bearer ACCESS")


class Toy:
    """A two-entry pool with no files: enough to drive the protocol loop."""

    def __init__(self, hooks):
        self.hooks = hooks

    def load_pool(self):
        self.hooks.pause("after_load")
        return 2

    def select(self):
        raise KeyError("nothing")

    def use(self, credential_id):
        return 200


class ServeTest(unittest.TestCase):
    def test_the_loop_greets_pauses_and_turns_errors_into_failed_operations(self):
        hello = {"protocol": pa.PROTOCOL, "hello": {"proc": 1, "issuer_url": "http://127.0.0.1:9"}}
        lines = [hello, {"op": "load_pool"}, {"resume": True}, {"op": "select"},
                 {"op": "use", "credential_id": "a"}, {"op": "add_entry", "label": "x"}]
        inp = io.StringIO("".join(json.dumps(m) + "\n" for m in lines))
        out = io.StringIO()
        self.assertEqual(pa.serve(lambda h, hooks, http: Toy(hooks), inp, out, subject="toy"), 0)
        msgs = [json.loads(m) for m in out.getvalue().splitlines()]
        self.assertEqual(msgs[0], {"protocol": pa.PROTOCOL, "ok": True, "subject": "toy"})
        self.assertEqual(msgs[1], {"pause": "after_load"})
        self.assertEqual(msgs[2], {"ok": True, "entries": 2})
        self.assertEqual(msgs[3], {"ok": False, "error": "KeyError: 'nothing'"})
        self.assertEqual(msgs[4], {"ok": True, "status": 200, "reset_at_ms": None})
        self.assertFalse(msgs[5]["ok"])

    def test_only_the_pauses_the_hello_lists_are_announced(self):
        # Toy's load_pool pauses at after_load; a hello listing only before_redeem makes that
        # pause silent (no round trip), and the reply follows the greeting directly.
        hello = {"protocol": pa.PROTOCOL, "hello": {"proc": 1, "issuer_url": "http://127.0.0.1:9",
                                                   "pauses": ["before_redeem"]}}
        inp = io.StringIO(json.dumps(hello) + "\n" + json.dumps({"op": "load_pool"}) + "\n")
        out = io.StringIO()
        self.assertEqual(pa.serve(lambda h, hooks, http: Toy(hooks), inp, out, subject="toy"), 0)
        msgs = [json.loads(m) for m in out.getvalue().splitlines()]
        self.assertEqual(msgs[1:], [{"ok": True, "entries": 2}])

    def test_another_protocol_is_refused(self):
        out = io.StringIO()
        self.assertEqual(pa.serve(None, io.StringIO('{"protocol": "x/9"}\n'), out), 2)
        self.assertFalse(json.loads(out.getvalue())["ok"])


if __name__ == "__main__":
    unittest.main()
