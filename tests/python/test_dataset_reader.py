#!/usr/bin/env python3
"""tools/read_packed_dataset.py reads what `anchorctx pack` writes, as docs/DATASET_FORMAT.md says.

    python3 test_dataset_reader.py /path/to/anchorctx WORK_DIR

Packs small corpora in every anchor mode, shuffled and not, with domain tags (loss spans),
interleaved chunks, and a tokenizer with more than 65536 ids (uint32 tokens); then every
window the Python reader gives (tokens, document starts, loss spans, physical index) must equal
`anchorctx inspect DIR --json --window I`, the reader's own checks must pass, and its
inputs/targets must hold -1 exactly at the tokens inside loss spans. Standard library only.
Prints "N passed, M failed"; exits 1 on any failure.
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from read_packed_dataset import FormatError, PackedDataset  # noqa: E402

FIXTURES = os.path.join(ROOT, "tests", "data", "fixtures")


def run(exe, *args):
    out = subprocess.run([exe, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def big_vocab_tokenizer(path):
    """A byte-level tokenizer.json whose added token "<big>" has id 70000: 70001 ids, uint32."""
    table, extra = [], 256
    for b in range(256):
        if 33 <= b <= 126 or 161 <= b <= 172 or b >= 174:
            table.append(chr(b))
        else:
            table.append(chr(extra))
            extra += 1
    vocab = {c: b for b, c in enumerate(table)}
    vocab["<s>"] = 256
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}
    spec = {"version": "1.0", "normalizer": None, "pre_tokenizer": level, "decoder": level,
            "post_processor": None,
            "added_tokens": [{"id": 70000, "content": "<big>", "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "special": False}],
            "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)


def described_order(count, shuffle, seed):
    """order.bin as docs/DATASET_FORMAT.md describes it: Fisher-Yates over splitmix64."""
    mask = (1 << 64) - 1
    order, state = list(range(count)), (seed ^ 0x5EED) & mask
    if not shuffle:
        return order
    for i in range(count, 1, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        j = (z * i) >> 64
        order[i - 1], order[j] = order[j], order[i - 1]
    return order


def check_dataset(exe, folder, expect_dtype, results):
    ds = PackedDataset(folder)
    summary = run(exe, "inspect", folder, "--json")
    name = os.path.basename(folder)

    def expect(ok, what):
        results.append((ok, f"{name}: {what}"))

    expect(ds.meta["token_dtype"] == expect_dtype, f"token_dtype {ds.meta['token_dtype']}")
    expect(ds.num_windows == summary["windows"] and ds.seq_len == summary["seq_len"],
           "window count and seq_len as inspect")
    expect(ds.verify() is not None, "verify")
    spans_seen = 0
    for i in range(ds.num_windows):
        ours = ds.window(i)
        theirs = run(exe, "inspect", folder, "--json", "--no-verify", "--window", str(i))["window"]
        theirs.pop("documents", None)
        if ours != theirs:
            expect(False, f"window {i}: reader {ours} != inspect {theirs}")
            return
        inputs, targets = ds.inputs_and_targets(i)
        masked = set()
        for k in range(0, len(ours["loss_spans"]), 2):
            masked.update(range(ours["loss_spans"][k], ours["loss_spans"][k + 1]))
        spans_seen += len(ours["loss_spans"]) // 2
        want = [-1 if t + 1 in masked else tok for t, tok in enumerate(ours["tokens"][1:])]
        if inputs != ours["tokens"][:-1] or targets != want:
            expect(False, f"window {i}: inputs/targets")
            return
    expect(True, f"{ds.num_windows} windows equal inspect's")
    return spans_seen


def main():
    exe, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    corpus = os.path.join(FIXTURES, "small_corpus.jsonl")
    results = []

    def pack(name, *args):
        folder = os.path.join(work, name)
        run(exe, "pack", "--input", corpus, "--out", folder, "--quiet", "--json", *args)
        return folder

    check_dataset(exe, pack("per_doc", "--seq-len", "100", "--anchor-mode", "per_doc",
                            "--no-shuffle", "--interleave-chunks"), "uint16", results)
    spans = check_dataset(exe, pack("shared_tags", "--seq-len", "64", "--tag-field", "source",
                                    "--seed", "3"), "uint16", results)
    results.append((bool(spans), f"shared_tags: loss spans present ({spans})"))
    ds = PackedDataset(os.path.join(work, "shared_tags"))
    results.append((ds.order.slice(0, ds.num_windows) == described_order(ds.num_windows, True, 3),
                    "shared_tags: order.bin is the documented seeded shuffle"))
    ds = PackedDataset(os.path.join(work, "per_doc"))
    per_doc_starts_ok = all(
        ds.window(i)["tokens"][s] == ds.meta["anchor_id"]
        for i in range(ds.num_windows) for s in ds.window(i)["doc_starts"])
    results.append((per_doc_starts_ok, "per_doc: every document starts with the anchor"))
    results.append((ds.order.slice(0, ds.num_windows) == list(range(ds.num_windows)),
                    "per_doc: --no-shuffle gives the identity order"))
    check_dataset(exe, pack("none", "--seq-len", "50", "--anchor-mode", "none",
                            "--drop-remainder"), "uint16", results)

    tokenizer = os.path.join(work, "big.json")
    big_vocab_tokenizer(tokenizer)
    big_corpus = os.path.join(work, "big.jsonl")
    with open(big_corpus, "w", encoding="utf-8") as f:
        for k in range(30):
            f.write(json.dumps({"text": f"document {k} <big> holds a big id <big> twice."}) + "\n")
    folder = os.path.join(work, "wide")
    run(exe, "pack", "--input", big_corpus, "--tokenizer", tokenizer, "--seq-len", "40", "--out",
        folder, "--quiet", "--json")
    check_dataset(exe, folder, "uint32", results)
    ds = PackedDataset(folder)
    results.append((any(70000 in ds.window(i)["tokens"] for i in range(ds.num_windows)),
                    "wide: id 70000 read back"))

    # A damaged folder is named, not misread.
    broken = os.path.join(work, "broken")
    shutil.copytree(os.path.join(work, "none"), broken)
    with open(os.path.join(broken, "order.bin"), "ab") as f:
        f.write(b"\0" * 8)
    try:
        PackedDataset(broken)
        results.append((False, "broken: a grown order.bin was accepted"))
    except FormatError as e:
        results.append(("order.bin" in str(e), f"broken: {e}"))

    failed = [what for ok, what in results if not ok]
    for what in failed:
        print("FAILED:", what)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
