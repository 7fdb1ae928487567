#!/usr/bin/env python3
"""Turns the JSON files of tools/bench/performance.sh into the Markdown tables of
docs/PERFORMANCE.md, with the ratios the attention issue sets as targets. Standard library only.

Usage: python3 tools/bench/performance_report.py OUT_DIR
"""
import json
import pathlib
import sys


def load(directory, name):
    path = directory / f"{name}.json"
    if not path.exists() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def ms(x):
    return "-" if x is None else f"{x:.1f}"


def main():
    directory = pathlib.Path(sys.argv[1])
    rows = []
    ours = {}
    for name in ["causal_8192_fp32", "causal_8192_bf16", "anchor_16384_fp32", "anchor_16384_bf16",
                 "intra_doc_16384_fp32", "causal_16384_fp32"]:
        r = load(directory, name)
        if r is None:
            continue
        ours[name] = r
        rows.append(f"| `{name}` | {r['mask']} | {r['seq_len']} | {r['dtype']} | "
                    f"{r['visible_fraction']:.4f} | {ms(r['fwd_ms'])} | {ms(r['bwd_ms'])} | "
                    f"{r['fwd_gflops']:.1f} | {r['bwd_gflops']:.1f} | {r['sgemm_gflops']:.1f} | "
                    f"{100 * r['fwd_gflops'] / r['sgemm_gflops']:.0f}% | "
                    f"{100 * r['bwd_gflops'] / r['sgemm_gflops']:.0f}% |")
    first = next(iter(ours.values()))
    print(f"anchorctx {first.get('version')}, {first.get('isa')} kernels, {first.get('threads')} "
          f"threads, BLAS: {first.get('blas')}\n")
    print("| run | mask | T | dtype | visible | fwd ms | bwd ms | fwd GFLOP/s | bwd GFLOP/s | "
          "sgemm GFLOP/s | fwd / sgemm | bwd / sgemm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))

    print("\nTargets:\n")
    c = ours.get("causal_8192_fp32")
    if c:
        print(f"- causal T=8192 fp32: forward {100 * c['fwd_gflops'] / c['sgemm_gflops']:.0f}% of sgemm "
              f"(target >= 60%), backward {100 * c['bwd_gflops'] / c['sgemm_gflops']:.0f}% (target >= 45%).")
    a, c16 = ours.get("anchor_16384_fp32"), ours.get("causal_16384_fp32")
    if a and c16:
        bound = 1.15 * a["visible_fraction"] + 0.05
        print(f"- anchor T=16384 (visible fraction {a['visible_fraction']:.4f}): time / causal time = "
              f"{a['fwd_ms'] / c16['fwd_ms']:.3f} forward, {a['bwd_ms'] / c16['bwd_ms']:.3f} backward "
              f"(target <= 1.15 * {a['visible_fraction']:.4f} + 0.05 = {bound:.3f}).")
    i = ours.get("intra_doc_16384_fp32")
    if i and c16:
        print(f"- intra_doc T=16384 (visible {i['visible_fraction']:.4f}): {i['fwd_ms'] / c16['fwd_ms']:.3f} "
              f"forward, {i['bwd_ms'] / c16['bwd_ms']:.3f} backward of causal.")
    for fp, bf in [("causal_8192_fp32", "causal_8192_bf16"), ("anchor_16384_fp32", "anchor_16384_bf16")]:
        if fp in ours and bf in ours:
            f, b = ours[fp], ours[bf]
            print(f"- bf16 / fp32 time, {fp.rsplit('_', 1)[0]}: forward {b['fwd_ms'] / f['fwd_ms']:.3f}, "
                  f"backward {b['bwd_ms'] / f['bwd_ms']:.3f} (target <= 1.15).")

    print("\nPeers (PyTorch on the CPU, same machine, same session, same layout):\n")
    print("| run | implementation | fwd ms | bwd ms | fwd GFLOP/s | bwd GFLOP/s | "
          "anchorctx fwd speed-up | anchorctx bwd speed-up | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    pairs = {"torch_causal_8192_fp32": "causal_8192_fp32", "torch_causal_8192_bf16": "causal_8192_bf16",
             "torch_anchor_16384_fp32": "anchor_16384_fp32", "torch_causal_16384_fp32": "causal_16384_fp32"}
    for peer_name, our_name in pairs.items():
        p = load(directory, peer_name)
        if p is None:
            continue
        ref = ours.get(our_name)
        for impl, r in p["impls"].items():
            if "error" in r or r.get("fwd_ms") is None:
                note = r.get("error", "not run")
                print(f"| `{peer_name}` | {impl} | - | - | - | - | - | - | {str(note)[:120]} |")
                continue
            f_up = r["fwd_ms"] / ref["fwd_ms"] if ref else None
            b_up = r["bwd_ms"] / ref["bwd_ms"] if ref and r.get("bwd_ms") else None
            bwd_gflops = "-" if r.get("bwd_gflops") is None else f"{r['bwd_gflops']:.1f}"
            note = r.get("sdpa_backend") or r.get("note") or ""
            if "compile_s" in r:
                note = f"compile {r['compile_s']:.1f} s; {note}"
            print(f"| `{peer_name}` | {impl} | {ms(r['fwd_ms'])} | {ms(r.get('bwd_ms'))} | "
                  f"{r['fwd_gflops']:.1f} | {bwd_gflops} | "
                  f"{'-' if f_up is None else f'{f_up:.2f}x'} | {'-' if b_up is None else f'{b_up:.2f}x'} | "
                  f"{note} |")


if __name__ == "__main__":
    main()
