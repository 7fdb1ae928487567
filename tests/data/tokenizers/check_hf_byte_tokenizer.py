#!/usr/bin/env python3
"""Loads the byte tokenizer's HuggingFace files with transformers and tokenizers.

Usage: check_hf_byte_tokenizer.py FOLDER EXPECTED_JSON
EXPECTED_JSON: {"cases": [{"text", "ids"}], "bos", "eos", "pad", "vocab_size"}; "ids" are the
byte tokenizer's ids of "text" (no bos).

For every case: tokenizers.Tokenizer.from_file(FOLDER/tokenizer.json) and
transformers.AutoTokenizer.from_pretrained(FOLDER) must give the ids without special tokens, and
the ids with bos first when special tokens are added (transformers' default, and what
`anchorctx tokenize` prints); decoding must give the text back. The special ids must be the byte
tokenizer's. Exit 0 when all holds.
"""
import json
import os
import sys

from tokenizers import Tokenizer
from transformers import AutoTokenizer


def main() -> int:
    folder, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    bos = expected["bos"]

    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(folder)
    assert auto.bos_token_id == bos, auto.bos_token_id
    assert auto.eos_token_id == expected["eos"], auto.eos_token_id
    assert auto.pad_token_id == expected["pad"], auto.pad_token_id
    assert len(auto) == expected["vocab_size"], len(auto)

    failures = 0
    for case in expected["cases"]:
        text, ids = case["text"], case["ids"]
        got = {
            "tokenizers": raw.encode(text, add_special_tokens=False).ids,
            "tokenizers+special": raw.encode(text).ids,
            "transformers": auto.encode(text, add_special_tokens=False),
            "transformers+special": auto(text)["input_ids"],
        }
        want = {
            "tokenizers": ids,
            "tokenizers+special": [bos] + ids,
            "transformers": ids,
            "transformers+special": [bos] + ids,
        }
        for key, value in got.items():
            if value != want[key]:
                failures += 1
                print(f"{key}: {text!r}: got {value}, expected {want[key]}")
        decoded = auto.decode([bos] + ids, skip_special_tokens=True)
        if decoded != text:
            failures += 1
            print(f"decode: {text!r}: got {decoded!r}")
    print(f"{len(expected['cases'])} texts, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
