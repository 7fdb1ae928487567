#!/usr/bin/env python3
"""Medians and ratios of a tools/bench/bf16_attention.sh run, as Markdown.

Per shape (mask, T) and kind (fp32, emulated, vdpbf16 = native without AMX, native): the median over rounds of each call's
median time, and the ratios that the targets of docs/PERFORMANCE.md name: native over fp32
speed, and native GFLOP/s against the same call's bf16 GEMM yardstick (and fp32 against its
sgemm). Usage: bf16_attention_report.py OUT_DIR
"""
import json
import pathlib
import statistics
import sys
from collections import defaultdict

KINDS = ("fp32", "emulated", "vdpbf16", "native")


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    runs = defaultdict(list)  # (mask, T, kind) -> [json]
    for path in sorted(out.glob("*.json")):
        mask, t, kind, _ = path.stem.split("_")
        text = path.read_text().strip()
        if text:  # a call still running (or killed) left an empty file
            runs[(mask, int(t), kind)].append(json.loads(text))
    med = lambda xs: statistics.median(xs)
    print("| mask | T | kernels | fwd ms | bwd ms | fwd GFLOP/s | bwd GFLOP/s | "
          "fwd % yardstick | bwd % yardstick | fwd speed-up vs fp32 | bwd speed-up vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    shapes = sorted({(m, t) for (m, t, _) in runs})
    for mask, t in shapes:
        base = runs.get((mask, t, "fp32"), [])
        base_fwd = med([r["fwd_ms"] for r in base]) if base else None
        base_bwd = med([r["bwd_ms"] for r in base]) if base else None
        for kind in KINDS:
            rs = runs.get((mask, t, kind))
            if not rs:
                continue
            fwd, bwd = med([r["fwd_ms"] for r in rs]), med([r["bwd_ms"] for r in rs])
            yard = "sgemm_gflops" if kind == "fp32" else "bf16_gemm_gflops"
            fwd_pct = med([100 * r["fwd_gflops"] / r[yard] for r in rs if r[yard] > 0])
            bwd_pct = med([100 * r["bwd_gflops"] / r[yard] for r in rs if r[yard] > 0])
            print(f"| {mask} | {t} | {rs[0]['isa']} ({kind}) | {fwd:.1f} | {bwd:.1f} | "
                  f"{med([r['fwd_gflops'] for r in rs]):.1f} | {med([r['bwd_gflops'] for r in rs]):.1f} | "
                  f"{fwd_pct:.0f}% of {yard.split('_gflops')[0]} | {bwd_pct:.0f}% | "
                  f"{base_fwd / fwd:.2f}x | {base_bwd / bwd:.2f}x |")
    print()
    print("Yardsticks (median over the calls of each shape): "
          + "; ".join(f"{m} {t}: sgemm {med([r['sgemm_gflops'] for k in KINDS for r in runs.get((m, t, k), [])]):.0f}, "
                      f"bf16 GEMM {med([r['bf16_gemm_gflops'] for k in KINDS for r in runs.get((m, t, k), [])]):.0f} GFLOP/s"
                      for m, t in shapes))
    # The CPU each call ran on (bench attention's `cpu` object; older JSON has none).
    cpus = {(c["brand"], c["vendor"], c["family"], c["model"], c["stepping"])
            for rs in runs.values() for r in rs if (c := r.get("cpu"))}
    for brand, vendor, family, model, stepping in sorted(cpus):
        print(f"CPU: {brand} ({vendor}, family {family}, model {model}, stepping {stepping})")


if __name__ == "__main__":
    main()
