#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into fuzz/corpus/<target>/.

Small inputs that reach the interesting paths quickly: valid files, near-valid ones (truncated,
bad lengths), and texts with multilingual characters, emoji, whitespace runs, special-token
strings and invalid UTF-8. Standard library only, except the llama2.c seed exported from the
committed SentencePiece fixture, which needs `pip install sentencepiece` (skipped without it).

Usage: python fuzz/corpus/make_seeds.py
"""
import gzip
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "data", "fixtures")


def write(target, name, data):
    folder = os.path.join(HERE, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


TEXTS = {
    "ascii": "The quick brown fox jumps over the lazy dog. It's 2024!",
    "multilingual": "Grüße aus München. 我们在公园里玩。 مرحبا بالعالم नमस्ते दुनिया",
    "emoji": "😀🎉 👨‍👩‍👧 👍🏽 ❤️ end",
    "whitespace": "def f(x):\n    return x\n\n\t\tif  a   b    c \r\n   ",
    "specials": "<|begin_of_text|>hello<|eot_id|> <tool>[MARK] <s> </s> <unk> <0x41> \u2581x",
}
INVALID = {
    "invalid_utf8": b"ok \xff\xfe \xc3 \xe4\xb8 \xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf \x80 end",
    "nul": b"a\x00b\x00\x00c",
}


def jsonl_seeds():
    t = "jsonl_reader_fuzz"
    # The first byte holds the reader options (see jsonl_reader_fuzz.cpp).
    write(t, "text", b"\x00" + '{"text": "hello world"}\n{"text": "Grüße 😀"}\n'.encode())
    write(t, "skip_bad", b"\x01" + b'{"text": "a"}\nnot json\n{"t": 1}\n{"text": "\xff"}\n')
    write(t, "pretokenized", b"\x02" + b'{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n')
    write(t, "gzip", b"\x00" + gzip.compress('{"text": "compressed 😀"}\n'.encode() * 3, mtime=0))
    write(t, "fields", b"\x0c" + b'{"t": "x", "source": "web"}\n{"t": "\\u00e9\\ud83d\\ude00"}\n')


def llama2c_bin(pieces, max_len=None):
    max_len = max_len or max(1, max(len(p) for p, _ in pieces))
    out = struct.pack("<i", max_len)
    for piece, score in pieces:
        out += struct.pack("<fi", score, len(piece)) + piece
    return out


def llama2c_seeds():
    t = "llama2c_tokenizer_fuzz"
    special = [(b"<unk>", 0.0), (b"<s>", 0.0), (b"</s>", 0.0)]
    byte_pieces = [(b"<0x%02X>" % b, 0.0) for b in range(256)]
    words = [b" ", b"e", b"h", b"l", b"o", b" h", b"he", b"ll", b"lo", b" hel", b" hello"]
    pieces = special + byte_pieces + [(w, -float(i)) for i, w in enumerate(words)]
    write(t, "bytes_and_words.bin", llama2c_bin(pieces))
    write(t, "no_byte_fallback.bin", llama2c_bin(special + [(b" ", 0.0), (b"a", -1.0),
                                                            (b" a", -0.5)]))
    write(t, "minimal.bin", llama2c_bin(special))
    write(t, "truncated.bin", llama2c_bin(pieces)[:-3])
    write(t, "nan_scores.bin", llama2c_bin(special + [(b"a", float("nan")), (b"b", float("inf")),
                                                      (b"ab", float("-inf")), (b" ", 1e30)]))
    try:
        import sentencepiece as spm
    except ImportError:
        return
    # The export of llama2.c's tokenizer.py, from the committed SentencePiece fixture.
    sp = spm.SentencePieceProcessor(model_file=os.path.join(FIXTURES, "spm_bpe.model"))
    exported = []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if i == sp.bos_id():
            piece = "\n<s>\n"
        elif i == sp.eos_id():
            piece = "\n</s>\n"
        exported.append((piece.replace("\u2581", " ").encode("utf-8"), sp.get_score(i)))
    write(t, "spm_bpe_export.bin", llama2c_bin(exported))


def hf_seeds():
    t = "hf_tokenizer_json_fuzz"
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5, "\u0120": 6,
             "\u0120a": 7}
    byte_level = {
        "version": "1.0",
        "added_tokens": [{"id": 8, "content": "<|endoftext|>", "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["a b", "\u0120 a"]},
    }
    write(t, "byte_level.json", json.dumps(byte_level, ensure_ascii=False))
    split = json.loads(json.dumps(byte_level))
    split["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False}]}
    split["model"]["merges"] = [["a", "b"], ["\u0120", "a"]]
    split["model"]["ignore_merges"] = True
    split["post_processor"] = {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    write(t, "split_regex.json", json.dumps(split, ensure_ascii=False))
    spm_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        spm_vocab["<0x%02X>" % b] = 3 + b
    for w in ["\u2581", "a", "b", "\u2581a", "ab"]:
        spm_vocab[w] = len(spm_vocab)
    spm_style = {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, c in enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": spm_vocab, "merges": ["\u2581 a", "a b"]},
    }
    write(t, "spm_style.json", json.dumps(spm_style, ensure_ascii=False))
    metaspace = json.loads(json.dumps(spm_style))
    metaspace["normalizer"] = None
    metaspace["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                                  "prepend_scheme": "first", "split": False}
    metaspace["decoder"] = {"type": "Metaspace", "replacement": "\u2581",
                            "prepend_scheme": "first", "split": False}
    write(t, "metaspace.json", json.dumps(metaspace, ensure_ascii=False))
    write(t, "not_bpe.json", '{"model": {"type": "WordPiece", "vocab": {}}}')
    write(t, "truncated.json", json.dumps(byte_level)[:200])


def encode_seeds():
    t = "tokenizer_encode_fuzz"
    for name, text in TEXTS.items():
        write(t, name, text)
    for name, data in INVALID.items():
        write(t, name, data)


if __name__ == "__main__":
    jsonl_seeds()
    llama2c_seeds()
    hf_seeds()
    encode_seeds()
