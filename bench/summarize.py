#!/usr/bin/env python3
"""Markdown tables from the suites' --benchmark_format=json (or --benchmark_out) files.

    bench/summarize.py gemv.json [gemm.json block.json]

Per shape, thread count and mode (and tokens for BM_Gemm): each case's time, GBps, that as a
fraction of BM_ReadBandwidth at the same thread count (from whichever file has it), and its
speed-up over the float baselines of the same group (baseline time / case time: above 1 is
faster). BM_Block7B rows give tokens/s and the speed-up over f32 (1 thread) and openblas (same
threads). With repetitions, medians are used.
"""
import json
import statistics
import sys
from collections import defaultdict

UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
FLOAT_BASELINES = ("f32_loop", "openblas_sgemv", "openblas_sgemm")


def load(paths):
    """Median time (us) and counters per case name, over repetitions."""
    runs, medians = defaultdict(list), {}
    for path in paths:
        with open(path) as f:
            for b in json.load(f)["benchmarks"]:
                row = {k: v for k, v in b.items() if isinstance(v, (int, float))}
                row["us"] = b["real_time"] * UNIT_US[b["time_unit"]]
                if b.get("run_type") == "aggregate":
                    if b.get("aggregate_name") == "median":
                        medians[b["run_name"]] = row
                else:
                    runs[b["run_name"]].append(row)
    cases = dict(medians)
    for name, rows in runs.items():
        cases[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return cases


def parse(name):
    """'BM_Gemv/highway/K:3/m:4096/...' -> ('BM_Gemv', 'highway', {'K': '3', 'm': '4096', ...})."""
    family, *parts = name.split("/")
    backend = parts.pop(0) if parts and ":" not in parts[0] else ""
    return family, backend, dict(p.split(":", 1) for p in parts)


def fmt(value, digits=1):
    return "" if value is None else f"{value:.{digits}f}"


def main(paths):
    cases = {name: (*parse(name), row) for name, row in load(paths).items()}
    bandwidth = {f["threads"]: row["GBps"] for fam, _, f, row in cases.values() if fam == "BM_ReadBandwidth"}
    if bandwidth:
        print("Read bandwidth (1 GiB buffer): " +
              ", ".join(f"{t} thread(s) {bw:.1f} GB/s" for t, bw in sorted(bandwidth.items())) + "\n")

    groups = defaultdict(list)
    for family, backend, fields, row in cases.values():
        if family in ("BM_Gemv", "BM_Gemm"):
            key = (family, fields["m"], fields["n"], fields["threads"], fields["mode"], fields.get("t", "1"))
            groups[key].append((backend, fields.get("K", ""), row))
    for (family, m, n, threads, mode, tokens), rows in sorted(groups.items(), key=lambda g: (
            g[0][0], int(g[0][1]), int(g[0][2]), int(g[0][3]), g[0][4], int(g[0][5]))):
        batch = f", {tokens} tokens" if family == "BM_Gemm" else ""
        print(f"### {family} {m}x{n}, {threads} thread(s), {mode}{batch}\n")
        baselines = {b: r["us"] for b, _, r in rows if b in FLOAT_BASELINES}
        bw = bandwidth.get(threads)
        print("| backend | K | bpw | us | GBps | of read BW | " + " | ".join(f"x {b}" for b in baselines) + " |")
        print("|---" * (6 + len(baselines)) + "|")
        for backend, k, r in rows:
            share = f"{100 * r['GBps'] / bw:.0f} %" if bw else ""
            speedups = " | ".join(fmt(t / r["us"], 2) for t in baselines.values())
            print(f"| {backend} | {k} | {fmt(r.get('bpw'), 3)} | {fmt(r['us'])} | {fmt(r['GBps'])} | {share} | "
                  f"{speedups} |")
        print()

    blocks = [(b, f, r) for fam, b, f, r in cases.values() if fam == "BM_Block7B"]
    if blocks:
        f32 = next((r["us"] for b, f, r in blocks if b == "f32"), None)
        openblas = {f["threads"]: r["us"] for b, f, r in blocks if b == "openblas"}
        print("### BM_Block7B: one LLaMA-7B block, decode (cold)\n")
        print("| variant | K | threads | ms/token | tokens/s | GBps | of read BW | x f32 | x openblas |")
        print("|---" * 9 + "|")
        order = lambda c: (int(c[1]["threads"]), c[0] not in ("f32", "openblas"), c[0], c[1].get("K", ""))
        for backend, f, r in sorted(blocks, key=order):
            bw = bandwidth.get(f["threads"])
            share = f"{100 * r['GBps'] / bw:.0f} %" if bw else ""
            base = openblas.get(f["threads"])
            print(f"| {backend} | {f.get('K', '')} | {f['threads']} | {fmt(r['us'] / 1e3, 2)} | "
                  f"{fmt(r['tokens_per_s'])} | {fmt(r['GBps'])} | {share} | "
                  f"{fmt(f32 / r['us'] if f32 else None, 2)} | {fmt(base / r['us'] if base else None, 2)} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
