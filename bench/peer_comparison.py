#!/usr/bin/env python3
"""multibool against llama.cpp's CPU backend, interleaved in one session, as ratio tables.

Runs bench_gemv / bench_gemm cases and llama.cpp's ggml_gemv_bench (the peer harness of the
shared peers folder: `build.sh` builds it into /tmp/peers) one after the other, case by case,
for several rounds (A B A B ...), and prints the medians and the ratios peer / multibool (above 1:
multibool is faster), with the read bandwidth measured before, between and after the rounds.
Every process run streams its weights from DRAM ("cold"), as decoding a model does. Without the
peer, only multibool's side and the bandwidth are printed.

  bench/peer_comparison.py --bench build/release/bench --peers /tmp/peers --rounds 3
  bench/peer_comparison.py --only decode --threads 1        # a subset
"""
import argparse
import csv
import io
import os
import re
import statistics
import subprocess
import sys

# Decode shapes (outputs m x inputs n) of a LLaMA-7B block; batches on the square one.
DECODE_SHAPES = [(4096, 11008), (11008, 4096), (4096, 4096)]
BATCH_SHAPE = (4096, 4096)
BATCH_TOKENS = [8, 32, 128]
KERNELS = [1, 2, 3]
# llama.cpp's types nearest in bits per weight to K = 1, 2, 3 (G = 128, fp16 scales: 1.125,
# 2.25, 3.375 bpw), with repack = 1 where llama.cpp repacks by default on this CPU.
PEER_TYPES = [("q1_0", 0), ("tq2_0", 0), ("q2_K", 1), ("q3_K", 0), ("q4_0", 1)]


def run(command):
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(" ".join(command) + f": exit status {result.returncode}")
    return result.stdout


def multibool_times(binary, pattern):
    """Google Benchmark's real time (us) of every case matching the regex."""
    out = run([binary, "--benchmark_filter=" + pattern, "--benchmark_format=csv"])
    times = {}
    rows = [line for line in out.splitlines() if line.startswith('"BM_') or line.startswith("name,")]
    for row in csv.DictReader(io.StringIO("\n".join(rows))):
        unit = row["time_unit"]
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[unit]
        times[row["name"]] = float(row["real_time"]) * scale
    return times


def peer_time(peers, peer_type, repack, m, n, tokens, threads):
    out = run([os.path.join(peers, "ggml_gemv_bench"), "--type", peer_type, "--m", str(m), "--k", str(n),
               "--n", str(tokens), "--threads", str(threads), "--repack", str(repack)])
    match = re.search(r"med_us=([0-9.]+)", out)
    if not match:
        raise RuntimeError(f"ggml_gemv_bench {peer_type}: no RESULT line")
    return float(match.group(1))


def bandwidth(peers):
    """DRAM read bandwidth in GB/s, 1 thread (the peers' membw when built, else bench_gemv's)."""
    if peers and os.path.exists(os.path.join(peers, "membw")):
        out = run([os.path.join(peers, "membw"), "1024", "5", "1"])
        return float(re.search(r"median=([0-9.]+)", out).group(1))
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="build/release/bench", help="folder of bench_gemv and bench_gemm")
    parser.add_argument("--peers", default="/tmp/peers", help="folder of ggml_gemv_bench and membw (optional)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--only", choices=["decode", "batch"], help="run one of the two tables")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    peers = args.peers if os.path.exists(os.path.join(args.peers, "ggml_gemv_bench")) else None
    if peers is None:
        print(f"note: no {args.peers}/ggml_gemv_bench (build it with shared/peers/build.sh): multibool only",
              file=sys.stderr)
    gemv = os.path.join(args.bench, "bench_gemv")
    gemm = os.path.join(args.bench, "bench_gemm")

    # (table, shape, tokens, threads) -> {"K=1": [us...], "q1_0": [us...], ...}
    samples = {}
    bandwidths = []

    def add(key, label, value):
        samples.setdefault(key, {}).setdefault(label, []).append(value)

    for round_index in range(args.rounds):
        bandwidths.append(bandwidth(peers))
        for t in threads:
            if args.only != "batch":
                for m, n in DECODE_SHAPES:
                    key = ("decode", (m, n), 1, t)
                    times = multibool_times(gemv, f"BM_Gemv/(highway_lut/K:[123]/G:128|f32_loop)/m:{m}/n:{n}/"
                                                  f"threads:{t}/mode:cold$")
                    for name, us in times.items():
                        k = re.search(r"K:(\d)", name)
                        add(key, f"K={k.group(1)}" if k else "f32_loop", us)
                    for peer_type, repack in PEER_TYPES if peers else []:
                        add(key, peer_type + (" (repacked)" if repack else ""),
                            peer_time(peers, peer_type, repack, m, n, 1, t))
            if args.only != "decode":
                m, n = BATCH_SHAPE
                for tokens in BATCH_TOKENS:
                    key = ("batch", (m, n), tokens, t)
                    # highway_lut picks the path for the batch; lut_tables is the table path alone.
                    times = multibool_times(gemm, f"BM_Gemm/(highway_lut|lut_tables)/K:[123]/G:128/m:{m}/n:{n}/"
                                                  f"threads:{t}/mode:cold/t:{tokens}$")
                    for name, us in times.items():
                        label = "K=" + re.search(r"K:(\d)", name).group(1)
                        add(key, label + (" (tables)" if "lut_tables" in name else ""), us)
                    for peer_type, repack in [("tq2_0", 0), ("q4_0", 1), ("bf16", 0)] if peers else []:
                        add(key, peer_type + (" (repacked)" if repack else ""),
                            peer_time(peers, peer_type, repack, m, n, tokens, t))
        print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    bandwidths.append(bandwidth(peers))

    if any(b is not None for b in bandwidths):
        print("read bandwidth, 1 thread (GB/s, before each round and after the last): " +
              ", ".join(f"{b:.1f}" for b in bandwidths if b is not None))
    print(f"medians of {args.rounds} interleaved rounds (us); ratio = peer time / multibool time "
          "(above 1: multibool faster)\n")
    for (table, (m, n), tokens, t), by_label in samples.items():
        medians = {label: statistics.median(v) for label, v in by_label.items()}
        title = f"{table} {m}x{n}" + (f", {tokens} tokens" if table == "batch" else "") + f", {t} thread(s)"
        print(f"### {title}\n")
        ours = [label for label in medians if label.startswith("K=")]
        theirs = [label for label in medians if not label.startswith("K=")]
        print("| multibool | us | " + " | ".join(f"{label} / it" for label in theirs) + " |")
        print("| --- | --- | " + " | ".join("---" for _ in theirs) + " |")
        for label in ours:
            cells = " | ".join(f"{medians[p] / medians[label]:.2f}" for p in theirs)
            print(f"| {label} | {medians[label]:.0f} | {cells} |")
        print("| (their us) | | " + " | ".join(f"{medians[p]:.0f}" for p in theirs) + " |\n")


if __name__ == "__main__":
    main()
