#!/usr/bin/env python3
"""Loads a .safetensors file written by anchorctx with the reference `safetensors` package.

Usage: check_safetensors_load.py FILE EXPECTED_JSON
EXPECTED_JSON: {"metadata": {...}, "tensors": {name: {"dtype", "shape", "hex"}}}.
safe_open runs the reference's full header validation (it refuses gaps, overlaps, bad offsets);
deserialize gives each tensor's raw bytes (BF16 included, which numpy cannot hold); F32 tensors
also go through safetensors.numpy.load_file. Exit 0 when everything matches.
"""
import json
import sys

import numpy as np
from safetensors import deserialize, safe_open
from safetensors.numpy import load_file


def main() -> int:
    path, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == expected["metadata"], (f.metadata(), expected["metadata"])
        assert sorted(f.keys()) == sorted(expected["tensors"]), sorted(f.keys())
    got = {name: info for name, info in deserialize(open(path, "rb").read())}
    for name, want in expected["tensors"].items():
        info = got[name]
        assert info["dtype"] == want["dtype"], (name, info["dtype"])
        assert list(info["shape"]) == want["shape"], (name, info["shape"])
        assert bytes(info["data"]).hex() == want["hex"], name
        if want["dtype"] == "F32":
            with safe_open(path, framework="numpy") as f:
                arr = f.get_tensor(name)
            assert arr.dtype == np.float32 and list(arr.shape) == want["shape"], name
            assert arr.tobytes().hex() == want["hex"], name
    only_f32 = {k: v for k, v in expected["tensors"].items() if v["dtype"] == "F32"}
    if len(only_f32) == len(expected["tensors"]):
        loaded = load_file(path)
        assert sorted(loaded) == sorted(only_f32)
    print("ok", len(got), "tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
