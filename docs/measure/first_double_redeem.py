#!/usr/bin/env python3
# Usage: python3 docs/measure/first_double_redeem.py target/release/poolcheck
# Time to the first double_redeem per preset: 20 seeded refresh-race runs each; from each run's
# kept logs, the time of the first repeated redemption of one refresh token, relative to the
# run's first record (the harness writing the initial store).
import json, subprocess, sys, glob, os, statistics, tempfile
BIN = sys.argv[1]
for preset in ["none", "thread-lock", "flock", "batched-persist", "merge-on-write", "flock-data", "fcntl"]:
    times, found = [], 0
    for seed in range(1, 21):
        d = tempfile.mkdtemp()
        subprocess.run([BIN, "run", "--scenario", "refresh-race", "--strategy", preset, "--seed", str(seed),
                        "--keep", d, "--format", "json"], capture_output=True)
        recs = []
        for f in glob.glob(os.path.join(d, "logs", "*.jsonl")):
            recs += [json.loads(l) for l in open(f) if l.strip()]
        recs.sort(key=lambda r: r["t_ns"])
        t0, seen = recs[0]["t_ns"], {}
        for r in recs:
            if r["kind"] == "redeemed" and r["outcome"] != "unknown":
                if r["refresh"] in seen:
                    times.append((r["t_ns"] - t0) / 1e6); found += 1; break
                seen[r["refresh"]] = 1
    med = statistics.median(times) if times else float("nan")
    print(f"{preset:16} double_redeem in {found}/20 runs; median time to first: {med:.1f} ms")
