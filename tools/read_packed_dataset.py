#!/usr/bin/env python3
"""Reads a packed dataset folder written by `anchorctx pack` (docs/DATASET_FORMAT.md).

Standard library only; the files are memory-mapped, so window i
costs two index reads and one slice whatever the dataset's size.

As a library:
    from read_packed_dataset import PackedDataset
    ds = PackedDataset("data/packed")
    w = ds.window(0)          # logical window 0 (after the shuffle)
    w["tokens"], w["doc_starts"], w["loss_spans"], w["physical"]
    inputs, targets = ds.inputs_and_targets(0)   # targets -1 where no loss

From the shell (the same object as `anchorctx inspect DIR --json --window I` prints under
"window", without "documents"):
    python3 tools/read_packed_dataset.py DIR --window I
    python3 tools/read_packed_dataset.py DIR --verify     # sizes, indexes, spans, order; hashes
                                                          # too when the xxhash package is there
"""
import argparse
import json
import mmap
import os
import struct
import sys

FORMAT_NAME = "anchorctx-packed"
FORMAT_VERSION = 1
FILES = ("tokens.bin", "doc_index.bin", "doc_starts.bin", "mask_index.bin", "mask_spans.bin",
         "order.bin")


class FormatError(Exception):
    """The folder is not a readable packed dataset; the message names the file."""


class _Array:
    """A little-endian array of one fixed-width unsigned type over a memory-mapped file."""

    def __init__(self, path, fmt):
        self.path, self.fmt = path, fmt
        self.width = struct.calcsize("<" + fmt)
        size = os.path.getsize(path)
        self._file = open(path, "rb")
        # mmap cannot map an empty file.
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.size_bytes = size
        self.length = size // self.width

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        return struct.unpack_from("<" + self.fmt, self._map, i * self.width)[0]

    def slice(self, begin, end):
        """Elements [begin, end) as a list."""
        n = end - begin
        return list(struct.unpack_from("<%d%s" % (n, self.fmt), self._map, begin * self.width))

    def bytes(self):
        return bytes(self._map)


class PackedDataset:
    def __init__(self, folder):
        self.folder = folder
        meta_path = os.path.join(folder, "meta.json")
        try:
            with open(meta_path, encoding="utf-8") as f:
                self.meta = json.load(f)
        except OSError as e:
            raise FormatError(f"{meta_path}: cannot read it ({e})") from e
        except json.JSONDecodeError as e:
            raise FormatError(f"{meta_path}: not JSON ({e})") from e
        m = self.meta
        if m.get("format") != FORMAT_NAME:
            raise FormatError(f"{meta_path}: 'format' is not \"{FORMAT_NAME}\"")
        if m.get("format_version") != FORMAT_VERSION:
            raise FormatError(f"{meta_path}: format_version {m.get('format_version')} is not "
                              f"{FORMAT_VERSION}")
        self.seq_len = m["seq_len"]
        self.window_len = self.seq_len + 1
        self.vocab_size = m["vocab_size"]
        self.num_windows = m["counts"]["windows"]
        self.anchor_mode = m["anchor_mode"]
        dtype = m["token_dtype"]
        if dtype not in ("uint16", "uint32"):
            raise FormatError(f"{meta_path}: token_dtype '{dtype}' is neither uint16 nor uint32")
        n, w = self.num_windows, self.window_len
        self.tokens = self._open("tokens.bin", "H" if dtype == "uint16" else "I", n * w)
        self.doc_index = self._open("doc_index.bin", "Q", n + 1)
        self.mask_index = self._open("mask_index.bin", "Q", n + 1)
        self.order = self._open("order.bin", "Q", n)
        self.doc_starts = self._open("doc_starts.bin", "I", self.doc_index[n])
        self.mask_spans = self._open("mask_spans.bin", "I", 2 * self.mask_index[n])

    def _open(self, name, fmt, count):
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            raise FormatError(f"{path}: missing")
        array = _Array(path, fmt)
        recorded = self.meta["files"][name]["bytes"]
        if array.size_bytes != recorded or len(array) != count:
            raise FormatError(f"{path}: {array.size_bytes} bytes; meta.json records {recorded}, "
                              f"the counts give {count * array.width}")
        return array

    def physical(self, i):
        """The place in the files of logical window i."""
        if not 0 <= i < self.num_windows:
            raise IndexError(f"window {i} out of range (the dataset has {self.num_windows})")
        return self.order[i]

    def window(self, i):
        """Logical window i: its tokens (window_len ids), document starts (window-local, sorted,
        first 0), loss spans (flattened begin, end pairs) and physical index."""
        p = self.physical(i)
        w = self.window_len
        return {
            "index": i,
            "physical": p,
            "doc_starts": self.doc_starts.slice(self.doc_index[p], self.doc_index[p + 1]),
            "loss_spans": self.mask_spans.slice(2 * self.mask_index[p],
                                                2 * self.mask_index[p + 1]),
            "tokens": self.tokens.slice(p * w, (p + 1) * w),
        }

    def inputs_and_targets(self, i):
        """The trainer's view of window i: seq_len inputs, and targets shifted by one with -1
        where no loss is taken (tokens inside a loss span are never targets). Document-boundary
        masking (train --mask-doc-boundaries) is a training option, not applied here."""
        win = self.window(i)
        tokens = win["tokens"]
        inputs, targets = tokens[:-1], tokens[1:]
        spans = win["loss_spans"]
        for k in range(0, len(spans), 2):
            for t in range(max(spans[k], 1), spans[k + 1]):
                targets[t - 1] = -1
        return inputs, targets

    def verify(self):
        """What `Dataset::verify` checks; the file hashes too when xxhash is installed.
        Returns the list of checks skipped (empty when all ran). Raises FormatError."""
        skipped = []
        n, w = self.num_windows, self.window_len
        try:
            import xxhash  # optional: XXH3-128, canonical (big-endian) hex
        except ImportError:
            xxhash = None
            skipped.append("file hashes (pip install xxhash)")
        if xxhash is not None:
            for name, array in zip(FILES, (self.tokens, self.doc_index, self.doc_starts,
                                           self.mask_index, self.mask_spans, self.order)):
                got = xxhash.xxh3_128_hexdigest(array.bytes())
                want = self.meta["files"][name]["xxh3_128"]
                if got != want:
                    raise FormatError(f"{array.path}: content hash {got}, meta.json {want}")
        for p in range(n):
            starts = self.doc_starts.slice(self.doc_index[p], self.doc_index[p + 1])
            if not starts or starts[0] != 0:
                raise FormatError(f"doc_starts.bin: window {p} does not start a document at 0")
            if any(b <= a for a, b in zip(starts, starts[1:])) or starts[-1] >= w:
                raise FormatError(f"doc_starts.bin: window {p}: starts {starts} not sorted in "
                                  f"[0, {w})")
            spans = self.mask_spans.slice(2 * self.mask_index[p], 2 * self.mask_index[p + 1])
            for k in range(0, len(spans), 2):
                if not spans[k] < spans[k + 1] <= w or (k and spans[k] < spans[k - 1]):
                    raise FormatError(f"mask_spans.bin: window {p}: spans {spans} not sorted "
                                      f"inside the window")
        tokens = self.tokens.slice(0, n * w)
        if tokens and max(tokens) >= self.vocab_size:
            raise FormatError(f"tokens.bin: id {max(tokens)} outside the vocabulary "
                              f"[0, {self.vocab_size})")
        if sorted(self.order.slice(0, n)) != list(range(n)):
            raise FormatError("order.bin: not a permutation of the windows")
        return skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--window", type=int, help="print logical window I as JSON")
    parser.add_argument("--verify", action="store_true", help="check the whole folder")
    args = parser.parse_args()
    try:
        ds = PackedDataset(args.folder)
        if args.verify:
            skipped = ds.verify()
            print(json.dumps({"valid": True, "windows": ds.num_windows, "skipped": skipped}))
        if args.window is not None:
            print(json.dumps(ds.window(args.window)))
        if not args.verify and args.window is None:
            print(json.dumps({"windows": ds.num_windows, "seq_len": ds.seq_len,
                              "token_dtype": ds.meta["token_dtype"],
                              "anchor_mode": ds.anchor_mode}))
    except (FormatError, IndexError) as e:
        print(f"read_packed_dataset: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
