#!/usr/bin/env python3
"""PyTorch peer of `anchorctx bench attention`: the same shapes through PyTorch's attention on the CPU.

Implementations measured (forward, then backward through autograd with a fixed random dout):
  sdpa_causal      F.scaled_dot_product_attention(is_causal=True), one sequence at a time. Under the
                   intra_doc / anchor masks it computes the causal mask, not the requested one: a cost
                   baseline ("causal time of the same shape"), not an equivalent.
  sdpa_dense_mask  the same with an explicit dense boolean mask [L, L] encoding the requested mask.
  sdpa_per_doc     what a PyTorch user writes for the intra_doc / anchor masks without a custom
                   kernel (AnchorContext's "flash" formulation, as its varlen call does on a GPU):
                   a loop over documents, each one F.scaled_dot_product_attention(is_causal=True)
                   on the document's rows, under the anchor mask with the anchor tokens prepended
                   (their rows recomputed per document and dropped, as each document's own bos
                   row is); the outputs concatenated. The honest peer of the anchor kernels.
  flex_attention   torch.nn.attention.flex_attention under torch.compile with a BlockMask from
                   create_block_mask; the batch in one call. Compile time is reported separately.

Masks (include/anchorctx/attention/mask.h): key k visible to query q iff k <= q, and for intra_doc
doc(k) == doc(q), for anchor (doc(k) == doc(q) or k < anchor_len).

Documents: --doc-lengths FILE holds one document length per line, sequences separated by a blank
line (what `anchorctx bench attention --save-docs` writes); without it each sequence is one document,
or --docs fixed:N | lognormal:MEDIAN:SIGMA generates them here (numpy, --seed; NOT the same draw as
the C++ bench: use the bench's --save-docs file to compare the exact same layout). With
--anchor-len A > 0 (default as the C++ bench: 1 for --mask anchor, else 0) the first A tokens of
every sequence form their own document (a longer first document is split; a file that already has
them as a first document, as the bench writes it, is unchanged).

Throughput counts useful work as the C++ bench does: 4*D flops per visible (q, k) pair of the
REQUESTED mask and query head forward, 2.5 times that backward; visible pairs are computed exactly
from the layout (checked against the dense mask when one is built).

Example:
  .venv/bin/python tools/peers/torch_attention.py --seq-len 8192 --heads 8 --head-dim 128 \
      --mask causal --threads 2 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

from cpu_info import cpu_info  # this folder's module (a script's folder is on sys.path)

IMPLS = ("sdpa_causal", "sdpa_dense_mask", "sdpa_per_doc", "flex_attention")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch CPU attention peer benchmark (same shapes as `anchorctx bench attention`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sequence (default: taken from --doc-lengths, else 4096)")
    p.add_argument("--batch", type=int, default=None,
                   help="sequences (default: taken from --doc-lengths, else 1)")
    p.add_argument("--heads", type=int, default=8, help="query heads (default 8)")
    p.add_argument("--kv-heads", type=int, default=None, help="key/value heads (default: --heads)")
    p.add_argument("--head-dim", type=int, default=128, help="head dimension D (default 128)")
    p.add_argument("--mask", choices=("causal", "intra_doc", "anchor"), default="causal")
    p.add_argument("--doc-lengths", metavar="FILE", default=None,
                   help="document lengths, one per line, sequences separated by a blank line")
    p.add_argument("--docs", metavar="SPEC", default=None,
                   help="generate documents instead of --doc-lengths: fixed:N or lognormal:MEDIAN:SIGMA")
    p.add_argument("--save-docs", metavar="FILE", default=None,
                   help="write the document lengths used (after the anchor split) to FILE")
    p.add_argument("--anchor-len", type=int, default=None,
                   help="leading anchor tokens per sequence, their own document (default, as the "
                        "C++ bench: 1 for --mask anchor, else 0)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions; medians reported (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--impl", default=",".join(IMPLS),
                   help=f"comma-separated subset of {','.join(IMPLS)} (default: all)")
    p.add_argument("--head-chunk", type=int, default=0,
                   help="SDPA: query heads per call (0: all, or automatic when only the math backend "
                        "runs and its [H, L, L] scores would not fit)")
    p.add_argument("--keep-compile-cache", action="store_true",
                   help="use the default inductor cache (compile time then may be a warm-cache time); "
                        "default: a fresh temporary cache, so compile_s is a cold compile")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if args.kv_heads is None:
        args.kv_heads = args.heads
    if args.anchor_len is None:
        args.anchor_len = 1 if args.mask == "anchor" else 0
    if args.heads <= 0 or args.kv_heads <= 0 or args.heads % args.kv_heads:
        p.error("--heads must be a positive multiple of --kv-heads")
    if args.head_dim <= 0 or args.repeat <= 0 or args.warmup < 0 or args.anchor_len < 0:
        p.error("--head-dim and --repeat must be positive, --warmup and --anchor-len non-negative")
    if args.doc_lengths and args.docs:
        p.error("--doc-lengths and --docs are exclusive")
    impls = [s.strip() for s in args.impl.split(",") if s.strip()]
    for s in impls:
        if s not in IMPLS:
            p.error(f"unknown --impl {s!r}; choose from {', '.join(IMPLS)}")
    args.impls = impls
    return args


# ----------------------------------------------------------------------------------------------
# Documents and visible pairs (no torch needed)


def read_doc_lengths(path):
    seqs, cur = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                if cur:
                    seqs.append(cur)
                    cur = []
                continue
            if s.startswith("#"):
                continue
            try:
                n = int(s)
            except ValueError:
                raise SystemExit(f"{path}:{lineno}: not an integer document length: {s!r}")
            if n <= 0:
                raise SystemExit(f"{path}:{lineno}: document length {n} must be positive")
            cur.append(n)
    if cur:
        seqs.append(cur)
    if not seqs:
        raise SystemExit(f"{path}: no document lengths")
    return seqs


def generate_docs(spec, seq_len, batch, anchor_len, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    parts = spec.split(":")
    seqs = []
    for _ in range(batch):
        body = seq_len - min(anchor_len, seq_len)
        docs = [min(anchor_len, seq_len)] if anchor_len > 0 else []
        total = 0
        while total < body:
            if parts[0] == "fixed" and len(parts) == 2:
                n = int(parts[1])
            elif parts[0] == "lognormal" and len(parts) == 3:
                median, sigma = float(parts[1]), float(parts[2])
                n = int(round(float(np.exp(np.log(median) + sigma * rng.standard_normal()))))
            else:
                raise SystemExit(f"--docs {spec!r}: expected fixed:N or lognormal:MEDIAN:SIGMA")
            n = max(1, min(n, body - total))
            docs.append(n)
            total += n
        seqs.append(docs)
    return seqs


def split_anchor(docs, anchor_len):
    """The first anchor_len tokens form their own document."""
    if anchor_len <= 0:
        return list(docs)
    out, pos, split = [], 0, False
    for n in docs:
        if pos < anchor_len < pos + n:
            out += [anchor_len - pos, pos + n - anchor_len]
            split = True
        else:
            out.append(n)
        pos += n
    return out if split else list(docs)


def visible_pairs(mask, docs, anchor_len):
    """Visible (q, k) pairs of one sequence, in O(documents); as AttentionLayout::visible_pairs."""
    length = sum(docs)
    tri = lambda n: n * (n + 1) // 2
    if mask == "causal":
        return tri(length)
    total, begin = 0, 0
    a = min(anchor_len, length)
    for n in docs:
        total += tri(n)
        if mask == "anchor":
            total += n * min(a, begin)
        begin += n
    return total


# ----------------------------------------------------------------------------------------------
# Benchmark


def median_ms(samples):
    return statistics.median(samples) * 1e3


def main(argv=None):
    args = parse_args(argv)

    # Documents.
    if args.doc_lengths:
        seqs = read_doc_lengths(args.doc_lengths)
        lens = {sum(s) for s in seqs}
        if args.batch is not None and args.batch != len(seqs):
            raise SystemExit(f"--batch {args.batch} but {args.doc_lengths} holds {len(seqs)} sequences")
        if args.seq_len is not None and lens != {args.seq_len}:
            raise SystemExit(f"--seq-len {args.seq_len} but the sequences of {args.doc_lengths} "
                             f"have lengths {sorted(lens)}")
        docs_source = f"file:{args.doc_lengths}"
    else:
        seq_len = args.seq_len if args.seq_len is not None else 4096
        batch = args.batch if args.batch is not None else 1
        if args.docs:
            seqs = generate_docs(args.docs, seq_len, batch, args.anchor_len, args.seed)
            docs_source = f"{args.docs} (numpy seed {args.seed})"
        else:
            seqs = [[seq_len] for _ in range(batch)]
            docs_source = "one document per sequence"
    seqs = [split_anchor(s, args.anchor_len) for s in seqs]
    if args.save_docs:
        with open(args.save_docs, "w") as f:
            f.write("\n\n".join("\n".join(str(n) for n in s) for s in seqs) + "\n")
    seq_lens = [sum(s) for s in seqs]
    batch = len(seqs)
    seq_len = seq_lens[0] if len(set(seq_lens)) == 1 else None

    # Threads must be fixed before torch starts its pools; a fresh inductor cache before it loads.
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MKL_NUM_THREADS"] = str(args.threads)
    cache_dir = None
    if "flex_attention" in args.impls and not args.keep_compile_cache:
        cache_dir = tempfile.TemporaryDirectory(prefix="torch_peer_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir.name
        os.environ.setdefault("TRITON_CACHE_DIR", os.path.join(cache_dir.name, "triton"))

    import numpy as np
    import torch
    import torch.nn.functional as F

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    H, KV, D, A = args.heads, args.kv_heads, args.head_dim, args.anchor_len
    group = H // KV

    pairs = [visible_pairs(args.mask, s, A) for s in seqs]
    causal_pairs = [visible_pairs("causal", s, A) for s in seqs]
    total_pairs = sum(pairs)
    fwd_flops = 4.0 * D * H * total_pairs
    bwd_flops = 2.5 * fwd_flops

    def doc_ids(docs):
        return torch.repeat_interleave(torch.arange(len(docs), dtype=torch.int32),
                                       torch.tensor(docs, dtype=torch.int64))

    def dense_mask(docs):
        L = sum(docs)
        qi = torch.arange(L).unsqueeze(1)
        ki = torch.arange(L).unsqueeze(0)
        m = ki <= qi
        if args.mask != "causal":
            d = doc_ids(docs)
            same = d.unsqueeze(1) == d.unsqueeze(0)
            if args.mask == "anchor":
                same |= ki < min(A, L)
            m &= same
            del same, d
        return m

    # Inputs: [1, H, L, D] per sequence (B = 1 per SDPA call), fixed seed.
    gen = torch.Generator().manual_seed(args.seed)

    def make_inputs(L):
        q = torch.randn(1, H, L, D, generator=gen).to(dtype)
        k = torch.randn(1, KV, L, D, generator=gen).to(dtype)
        v = torch.randn(1, KV, L, D, generator=gen).to(dtype)
        dout = torch.randn(1, H, L, D, generator=gen).to(dtype)
        return q, k, v, dout

    inputs = [make_inputs(L) for L in seq_lens]

    results = {}
    reference_out = None  # sdpa_dense_mask output of sequence 0, to check flex against

    # Exact check: float64 attention of the REQUESTED mask on sampled query rows of sequence 0.
    L0 = seq_lens[0]
    check_rows = torch.unique(torch.linspace(0, L0 - 1, steps=min(L0, 64)).round().long())

    def reference_rows():
        q0, k0, v0, _ = inputs[0]
        q = q0[0, :, check_rows].double()                          # [H, R, D]
        k = k0[0].double().repeat_interleave(group, dim=0)          # [H, L, D]
        v = v0[0].double().repeat_interleave(group, dim=0)
        s = q @ k.transpose(1, 2) / D ** 0.5                        # [H, R, L]
        ki = torch.arange(L0).unsqueeze(0)
        qi = check_rows.unsqueeze(1)
        m = ki <= qi
        if args.mask != "causal":
            d = doc_ids(seqs[0])
            same = d[check_rows].unsqueeze(1) == d.unsqueeze(0)
            if args.mask == "anchor":
                same |= ki < min(A, L0)
            m &= same
        s = s.masked_fill(~m, float("-inf"))
        return torch.softmax(s, dim=-1) @ v                          # [H, R, D]

    ref_rows = reference_rows()

    def max_err(out0):
        """out0: [1, H, L, D] output of sequence 0."""
        return float((out0[0, :, check_rows].double() - ref_rows).abs().max())

    # ---- SDPA ------------------------------------------------------------------------------
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def gqa_kwargs():
        return {"enable_gqa": True} if group > 1 else {}

    def sdpa_call(q, k, v, mask, causal, chunk):
        if chunk <= 0 or chunk >= H:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                  **gqa_kwargs())
        outs = []
        for h0 in range(0, H, chunk):
            h1 = min(H, h0 + chunk)
            outs.append(F.scaled_dot_product_attention(
                q[:, h0:h1], k[:, h0 // group:(h1 - 1) // group + 1],
                v[:, h0 // group:(h1 - 1) // group + 1], attn_mask=mask, is_causal=causal,
                **gqa_kwargs()))
        return torch.cat(outs, dim=1)

    def pick_backend(use_mask):
        """FLASH_ATTENTION (PyTorch's blockwise CPU kernel) when it accepts the call, else MATH."""
        L0 = 256
        q = torch.randn(1, H, L0, D, dtype=dtype, requires_grad=True)
        k = torch.randn(1, KV, L0, D, dtype=dtype, requires_grad=True)
        v = torch.randn(1, KV, L0, D, dtype=dtype, requires_grad=True)
        m = torch.ones(L0, L0, dtype=torch.bool).tril() if use_mask else None
        try:
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                F.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=not use_mask,
                                               **gqa_kwargs()).sum().backward()
            return SDPBackend.FLASH_ATTENTION, "flash_attention (aten::_scaled_dot_product_flash_attention_for_cpu)"
        except RuntimeError:
            return SDPBackend.MATH, "math (aten::_scaled_dot_product_attention_math)"

    def run_sdpa(name, use_mask):
        nonlocal reference_out
        backend, backend_name = pick_backend(use_mask)
        chunk = args.head_chunk
        if backend == SDPBackend.MATH and chunk == 0:
            # scores, probabilities and their gradients: ~4 * heads * L^2 elements per call.
            elem = 4
            budget = 8 * 2**30
            Lmax = max(seq_lens)
            per_head = 4 * Lmax * Lmax * elem
            chunk = max(1, min(H, budget // per_head))
            if group > 1:
                chunk = max(group, chunk // group * group)
            if chunk >= H:
                chunk = 0
        masks = [dense_mask(s) if use_mask else None for s in seqs]
        info = {"sdpa_backend": backend_name,
                "gqa": ("enable_gqa=True" if group > 1 else "none (heads == kv_heads)"),
                "computes_mask": args.mask if use_mask else "causal",
                "head_chunk": chunk if chunk else H,
                "calls": "one per sequence" + (f", {chunk} query heads per call" if chunk else "")}
        if use_mask:
            mask_pairs = sum(int(m.sum()) for m in masks)
            info["dense_mask_visible_pairs_check"] = (mask_pairs == total_pairs)
            if mask_pairs != total_pairs:
                info["dense_mask_visible_pairs"] = mask_pairs
        else:
            info["matches_requested_mask"] = args.mask == "causal" or total_pairs == sum(causal_pairs)
        own_pairs = total_pairs if use_mask else sum(causal_pairs)
        fwd, bwd, cpu = [], [], []
        err = None
        with sdpa_kernel([backend]):
            for it in range(args.warmup + args.repeat):
                tf = tb = 0.0
                c0, w0 = time.process_time(), time.perf_counter()
                for b, (q0, k0, v0, dout) in enumerate(inputs):
                    q = q0.detach().requires_grad_()
                    k = k0.detach().requires_grad_()
                    v = v0.detach().requires_grad_()
                    t0 = time.perf_counter()
                    out = sdpa_call(q, k, v, masks[b], not use_mask, chunk)
                    t1 = time.perf_counter()
                    out.backward(dout)  # == autograd of sum(out * dout)
                    t2 = time.perf_counter()
                    tf += t1 - t0
                    tb += t2 - t1
                    if b == 0 and it == 0:
                        err = max_err(out.detach())
                        if use_mask and reference_out is None:
                            reference_out = out.detach().float()
                    del out, q, k, v
                if it >= args.warmup:
                    fwd.append(tf)
                    bwd.append(tb)
                    cpu.append((time.process_time() - c0) / (time.perf_counter() - w0) / threads)
        del masks
        f_ms, b_ms = median_ms(fwd), median_ms(bwd)
        res = {"fwd_ms": f_ms, "bwd_ms": b_ms,
               "fwd_gflops": fwd_flops / (f_ms * 1e-3) / 1e9,
               "bwd_gflops": bwd_flops / (b_ms * 1e-3) / 1e9,
               "fwd_ms_all": [t * 1e3 for t in fwd], "bwd_ms_all": [t * 1e3 for t in bwd],
               "cpu_utilization": statistics.median(cpu),
               "max_abs_err_vs_fp64_reference": err}
        if own_pairs != total_pairs:
            res["fwd_gflops_own_mask"] = 4.0 * D * H * own_pairs / (f_ms * 1e-3) / 1e9
            res["bwd_gflops_own_mask"] = 2.5 * 4.0 * D * H * own_pairs / (b_ms * 1e-3) / 1e9
        res.update(info)
        return res

    def per_doc_call(q, k, v, docs):
        """[1, H, L, D] attention of the requested mask as a loop of causal SDPA calls."""
        if args.mask == "causal":
            return sdpa_call(q, k, v, None, True, 0)
        L = sum(docs)
        a = min(A, L) if args.mask == "anchor" else 0
        outs, start = [], 0
        for n in docs:
            s, e = start, start + n
            start = e
            if s < a or a == 0:  # the anchor's own document, or no anchor: the document alone
                outs.append(sdpa_call(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], None, True, 0))
                continue
            qd = torch.cat([q[:, :, :a], q[:, :, s:e]], dim=2)
            kd = torch.cat([k[:, :, :a], k[:, :, s:e]], dim=2)
            vd = torch.cat([v[:, :, :a], v[:, :, s:e]], dim=2)
            outs.append(sdpa_call(qd, kd, vd, None, True, 0)[:, :, a:])
        return torch.cat(outs, dim=2)

    def run_sdpa_per_doc():
        backend, backend_name = pick_backend(False)
        info = {"sdpa_backend": backend_name,
                "gqa": ("enable_gqa=True" if group > 1 else "none (heads == kv_heads)"),
                "computes_mask": args.mask,
                "calls": ("one per document, is_causal=True" +
                          (f", the {A} anchor token(s) prepended" if args.mask == "anchor" else ""))}
        fwd, bwd, cpu = [], [], []
        err = None
        with sdpa_kernel([backend]):
            for it in range(args.warmup + args.repeat):
                tf = tb = 0.0
                c0, w0 = time.process_time(), time.perf_counter()
                for b, (q0, k0, v0, dout) in enumerate(inputs):
                    q = q0.detach().requires_grad_()
                    k = k0.detach().requires_grad_()
                    v = v0.detach().requires_grad_()
                    t0 = time.perf_counter()
                    out = per_doc_call(q, k, v, seqs[b])
                    t1 = time.perf_counter()
                    out.backward(dout)
                    t2 = time.perf_counter()
                    tf += t1 - t0
                    tb += t2 - t1
                    if b == 0 and it == 0:
                        err = max_err(out.detach())
                    del out, q, k, v
                if it >= args.warmup:
                    fwd.append(tf)
                    bwd.append(tb)
                    cpu.append((time.process_time() - c0) / (time.perf_counter() - w0) / threads)
        f_ms, b_ms = median_ms(fwd), median_ms(bwd)
        res = {"fwd_ms": f_ms, "bwd_ms": b_ms,
               "fwd_gflops": fwd_flops / (f_ms * 1e-3) / 1e9,
               "bwd_gflops": bwd_flops / (b_ms * 1e-3) / 1e9,
               "fwd_ms_all": [t * 1e3 for t in fwd], "bwd_ms_all": [t * 1e3 for t in bwd],
               "cpu_utilization": statistics.median(cpu),
               "max_abs_err_vs_fp64_reference": err}
        res.update(info)
        return res

    def run_flex():
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        info = {"gqa": ("enable_gqa=True" if group > 1 else "none (heads == kv_heads)"),
                "computes_mask": args.mask, "calls": "the whole batch in one call",
                "compiled": "torch.compile(flex_attention), default options"}
        if seq_len is None:
            return {"error": "flex_attention: sequences of unequal length are not supported here"} | info
        L = seq_len
        docs_t = torch.stack([doc_ids(s) for s in seqs])  # [B, L]
        anchors = min(A, L)
        if args.mask == "causal":
            def mask_mod(b, h, q_idx, kv_idx):
                return kv_idx <= q_idx
        elif args.mask == "intra_doc":
            def mask_mod(b, h, q_idx, kv_idx):
                return (kv_idx <= q_idx) & (docs_t[b, q_idx] == docs_t[b, kv_idx])
        else:
            def mask_mod(b, h, q_idx, kv_idx):
                return (kv_idx <= q_idx) & ((docs_t[b, q_idx] == docs_t[b, kv_idx]) | (kv_idx < anchors))
        t0 = time.perf_counter()
        block_mask = create_block_mask(mask_mod, batch, None, L, L, device="cpu")
        info["block_mask_ms"] = (time.perf_counter() - t0) * 1e3
        info["block_size"] = list(block_mask.BLOCK_SIZE)
        info["blocks_skipped_fraction"] = float(block_mask.sparsity()) / 100.0

        q = torch.cat([x[0] for x in inputs])
        k = torch.cat([x[1] for x in inputs])
        v = torch.cat([x[2] for x in inputs])
        kw = gqa_kwargs()
        compiled = torch.compile(flex_attention)
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                out = compiled(q, k, v, block_mask=block_mask, **kw)
        except Exception as e:  # noqa: BLE001 - record, don't crash
            return {"error": f"{type(e).__name__}: {e}".strip()[:2000],
                    "traceback_tail": traceback.format_exc()[-1500:]} | info
        info["compile_s"] = time.perf_counter() - t0
        info["compile_cache"] = "fresh temporary inductor cache" if cache_dir else "default inductor cache"
        info["max_abs_err_vs_fp64_reference"] = max_err(out[:1])
        if reference_out is not None:
            info["max_abs_diff_vs_sdpa_dense_mask"] = float((out[:1].float() - reference_out).abs().max())
        del out
        fwd, cpu = [], []
        with torch.no_grad():
            for it in range(args.warmup + args.repeat):
                c0 = time.process_time()
                t0 = time.perf_counter()
                out = compiled(q, k, v, block_mask=block_mask, **kw)
                t1 = time.perf_counter()
                c1 = time.process_time()
                del out
                if it >= args.warmup:
                    fwd.append(t1 - t0)
                    cpu.append((c1 - c0) / (t1 - t0) / threads)
        f_ms = median_ms(fwd)
        res = {"fwd_ms": f_ms, "bwd_ms": None,
               "fwd_gflops": fwd_flops / (f_ms * 1e-3) / 1e9, "bwd_gflops": None,
               "fwd_ms_all": [t * 1e3 for t in fwd], "cpu_utilization": statistics.median(cpu)}
        # Backward: try it once and record why it does not run (CPU backward is unsupported in
        # some torch versions).
        try:
            qg = q[:, :, :min(L, 128)].detach().requires_grad_()
            kg = k[:, :, :min(L, 128)].detach().requires_grad_()
            vg = v[:, :, :min(L, 128)].detach().requires_grad_()
            bm_small = create_block_mask(lambda b, h, qi, ki: ki <= qi, None, None, qg.shape[2],
                                         qg.shape[2], device="cpu")
            o = compiled(qg, kg, vg, block_mask=bm_small, **kw)
            o.sum().backward()
            res["bwd_error"] = ("backward runs on a small probe but is not timed here; "
                                "time it with a newer version of this script")
        except Exception as e:  # noqa: BLE001
            res["bwd_error"] = f"{type(e).__name__}: {e}".strip()[:1000]
        res.update(info)
        return res

    t_start = time.perf_counter()
    order = [i for i in ("sdpa_dense_mask", "sdpa_causal", "sdpa_per_doc", "flex_attention")
             if i in args.impls]
    for name in order:
        try:
            if name == "sdpa_causal":
                results[name] = run_sdpa(name, use_mask=False)
            elif name == "sdpa_dense_mask":
                results[name] = run_sdpa(name, use_mask=True)
            elif name == "sdpa_per_doc":
                results[name] = run_sdpa_per_doc()
            else:
                results[name] = run_flex()
        except Exception as e:  # noqa: BLE001 - record, keep going
            results[name] = {"error": f"{type(e).__name__}: {e}".strip()[:2000],
                             "traceback_tail": traceback.format_exc()[-1500:]}
        if not args.json:
            print(f"[{name} done, {time.perf_counter() - t_start:.1f} s]", file=sys.stderr)
    results = {k: results[k] for k in IMPLS if k in results}

    all_docs = [n for s in seqs for n in s]
    report = {
        "peer": "pytorch",
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_info(),
        "threads": threads,
        "args": {"seq_len": seq_len if seq_len is not None else seq_lens, "batch": batch,
                 "heads": H, "kv_heads": KV, "head_dim": D, "mask": args.mask,
                 "docs": docs_source, "anchor_len": A, "dtype": args.dtype,
                 "threads": args.threads, "repeat": args.repeat, "warmup": args.warmup,
                 "seed": args.seed, "impl": args.impls},
        "tokens": sum(seq_lens),
        "documents": len(all_docs),
        "doc_length_median": statistics.median(all_docs),
        "visible_pairs": total_pairs,
        "causal_pairs": sum(causal_pairs),
        "visible_fraction": total_pairs / sum(causal_pairs),
        "fwd_gflop": fwd_flops / 1e9,
        "bwd_gflop": bwd_flops / 1e9,
        "flops_rule": "4*D per visible (q,k) pair of the requested mask and query head forward; "
                      "2.5x that backward",
        "timing": "medians over --repeat after --warmup; fwd = training forward (inputs require "
                  "grad, except flex: no_grad since CPU backward is unsupported); bwd = "
                  "out.backward(dout) (== autograd of sum(out*dout)), summed over sequences",
        "impls": results,
        "cpu_utilization_note": "per impl: process CPU time / (wall time * threads) over the timed "
                                "runs; well under 1 means the cores were shared or idle",
        "loadavg_at_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - t_start,
    }
    if cache_dir is not None:
        cache_dir.cleanup()

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    a = report["args"]
    print(f"torch {report['torch_version']} ({report['cpu_capability']}), {threads} threads | "
          f"mask={a['mask']} B={batch} L={a['seq_len']} H={H} KV={KV} D={D} {a['dtype']} | "
          f"docs: {docs_source}, {len(all_docs)} docs | visible fraction {report['visible_fraction']:.4f}")
    fmt = "{:<16} {:>10} {:>10} {:>10} {:>10}  {}"
    print(fmt.format("impl", "fwd_ms", "bwd_ms", "fwd_GF/s", "bwd_GF/s", "notes"))
    f = lambda x, p=1: "-" if x is None else f"{x:.{p}f}"
    for name, r in results.items():
        if "error" in r and "fwd_ms" not in r:
            print(fmt.format(name, "-", "-", "-", "-", "ERROR " + r["error"].splitlines()[0][:100]))
            continue
        notes = []
        if "sdpa_backend" in r:
            notes.append(r["sdpa_backend"].split()[0])
        if r.get("computes_mask") != args.mask:
            notes.append(f"computes {r['computes_mask']} mask")
        if r.get("max_abs_err_vs_fp64_reference") is not None:
            notes.append(f"err {r['max_abs_err_vs_fp64_reference']:.1e}")
        if r.get("cpu_utilization") is not None and r["cpu_utilization"] < 0.9:
            notes.append(f"cpu util {r['cpu_utilization']:.2f}")
        if "compile_s" in r:
            notes.append(f"compile {r['compile_s']:.1f}s")
        if r.get("bwd_error"):
            notes.append("bwd: " + r["bwd_error"].splitlines()[0][:70])
        print(fmt.format(name, f(r["fwd_ms"]), f(r.get("bwd_ms")), f(r["fwd_gflops"]),
                         f(r.get("bwd_gflops")), "; ".join(notes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
