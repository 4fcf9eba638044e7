"""Regret of the engine's first and after-tuning choices against every candidate measured.

python3 analyse.py HOST_FOLDER — reads HOST_FOLDER/workload.txt (the engine's choices, from an empty
cache) and HOST_FOLDER/exhaustive/*.tuning.json (every candidate at every shape, end-to-end GFLOPS).

Settled end-to-end GFLOPS, as the selector and models/README.md judge them: every kernel of a device
moves the same bytes at a shape, so a candidate's end-to-end time is the median copy time of its
device's kernels there (end-to-end minus kernel time) plus its own kernel time. A single end-to-end
measurement carries the copy's noise (one H100 run measured rb128x64x16_8x4_p at 1,190 end to end
with a kernel as fast as the best, whose neighbours measured 2,000-2,400). `--raw` judges the raw
measurements instead.
"""
import glob
import json
import os
import re
import sys

os.chdir(sys.argv[1])
raw = "--raw" in sys.argv[2:]

measured = {}  # (m, n, k) -> {(device, kernel): e2e GFLOPS}
for path in glob.glob("exhaustive/*.tuning.json"):
    db = json.load(open(path))
    by_shape = {}
    for row in db["rows"]:
        by_shape.setdefault((row["m"], row["n"], row["k"]), []).append(row)
    for shape, found in by_shape.items():
        flops = 2.0 * shape[0] * shape[1] * shape[2]
        seconds = lambda gflops: flops / (gflops * 1e9)
        copies = sorted(max(seconds(r["e2e_gflops"]) - seconds(r["gflops"]), 0.0) for r in found)
        copy = copies[len(copies) // 2]
        for row in found:
            settled = flops / (copy + seconds(row["gflops"])) / 1e9
            measured.setdefault(shape, {})[(db["device"], row["kernel"])] = \
                row["e2e_gflops"] if raw else settled

text = open("workload.txt").read()
rows = []
for block in text.split("== ")[1:]:
    shape = tuple(int(x) for x in block.split()[0].split("x"))
    # The decision once the calls are done; older runs printed only the last call's kernel.
    last = re.search(r"^decision after the calls: (\S+) on \S+ (.+) from the", block, re.M) or \
        re.search(r"^(\S+) on \S+ \(\S+\) (.+?): \d+x", block, re.M)
    first = re.search(r"first call ran (\S+) on \S+ (.+)$", block, re.M)
    table = measured[shape]
    best = max(table.values())
    regret = lambda device, kernel: best / table[(device.strip(), kernel)] - 1
    rows.append((shape, regret(first.group(2), first.group(1)), regret(last.group(2), last.group(1)),
                 first.group(1), last.group(1), max(table, key=table.get)))

print("| shape | first call | regret | after tuning | regret | best measured |")
print("|---|---|---|---|---|---|")
for shape, r1, r2, k1, k2, best in rows:
    print(f"| {'x'.join(map(str, shape))} | {k1} | {100 * r1:.0f}% | {k2} | {100 * r2:.0f}% | {best[1]} ({best[0][:18]}) |")
for label, i in [("first call", 1), ("after tuning", 2)]:
    values = [r[i] for r in rows]
    top1 = sum(v < 0.005 for v in values)
    print(f"{label}: top-1 {top1}/{len(values)}, mean regret {100 * sum(values) / len(values):.1f}%, "
          f"worst {100 * max(values):.0f}%, worst ratio {1 + max(values):.2f}x")
