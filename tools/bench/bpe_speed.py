#!/usr/bin/env python3
"""BPE encode speed, side by side: the `tokenizers` library vs anchorctx, one thread each.

Builds the GPT-2 tokenizer.json from ../shared/data/tokenizers/gpt2/{vocab.json,merges.txt} with
`tokenizers`, times `encode_batch` on the texts of a JSONL corpus with RAYON_NUM_THREADS=1
(first pass: empty cache; then warm passes, median), then runs anchorctx's Google Benchmark
(bench/hf_bpe_bench.cpp) on the same file and text, and checks that both give the same ids count.

Usage: python tools/bench/bpe_speed.py --bench BUILD/bench/anchorctx_microbench
           [--corpus ../shared/data/corpus/c4_demo.jsonl] [--repeats 7]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its pool
os.environ["TOKENIZERS_PARALLELISM"] = "true"
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "..", "shared", "data")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, help="the anchorctx_microbench binary")
    ap.add_argument("--corpus", default=os.path.join(SHARED, "corpus", "c4_demo.jsonl"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    gpt2 = os.path.join(SHARED, "tokenizers", "gpt2")
    texts = [json.loads(line)["text"] for line in open(args.corpus, encoding="utf-8") if line.strip()]
    nbytes = sum(len(t.encode()) for t in texts)

    tok = Tokenizer(models.BPE.from_file(os.path.join(gpt2, "vocab.json"),
                                         os.path.join(gpt2, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "tokenizer.json")
        tok.save(path)
        tok = Tokenizer.from_file(path)  # fresh cache
        t0 = time.perf_counter()
        encs = tok.encode_batch(texts, add_special_tokens=False)
        cold = time.perf_counter() - t0
        ntokens = sum(len(e.ids) for e in encs)
        warm = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tok.encode_batch(texts, add_special_tokens=False)
            warm.append(time.perf_counter() - t0)
        hf_cold = nbytes / cold / 1e6
        hf_warm = nbytes / statistics.median(warm) / 1e6

        env = dict(os.environ, ANCHORCTX_BPE_TOKENIZER=path, ANCHORCTX_BPE_CORPUS=args.corpus,
                   OMP_NUM_THREADS="1")
        out = subprocess.run([args.bench, "--benchmark_filter=HfBpe", "--benchmark_format=json",
                              f"--benchmark_repetitions={args.repeats}",
                              "--benchmark_report_aggregates_only=true"],
                             env=env, check=True, capture_output=True, text=True).stdout
        ours = {}
        for b in json.loads(out)["benchmarks"]:
            if b.get("aggregate_name") == "median":
                ours[b["run_name"]] = (b["bytes_per_second"] / 1e6, b.get("tokens"))

    report = {"corpus": os.path.basename(args.corpus), "bytes": nbytes, "tokens": ntokens,
              "tokenizers_mb_s": {"cold": round(hf_cold, 2), "warm_median": round(hf_warm, 2)},
              "anchorctx_mb_s": {k: round(v[0], 2) for k, v in ours.items()},
              "anchorctx_tokens": {k: v[1] for k, v in ours.items()}}
    print(json.dumps(report, indent=1))
    for name, (mbs, tokens) in ours.items():
        if tokens is not None and int(tokens) != ntokens:
            print(f"token count differs: {name} {tokens} vs tokenizers {ntokens}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
