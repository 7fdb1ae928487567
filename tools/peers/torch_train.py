#!/usr/bin/env python3
"""PyTorch peer of `anchorctx bench train`: the same model and window through transformers on the CPU.

One training step = zero_grad, forward of a transformers causal LM (random init) over one packed
window of --seq-len tokens, mean cross-entropy (on logits.float(), labels already shifted), backward,
AdamW step (lr 1e-4, betas 0.9/0.95, weight decay 0.1, eps 1e-8). After --warmup untimed steps,
--steps steps are timed one by one (time.perf_counter); the median is reported.

Model: --preset tiny | reference (the numbers of anchorctx's presets, src/model/config.cpp:
  tiny       hidden 128, 4 layers, 4 heads, 2 kv heads, intermediate 352, vocab 259
             (bos/eos/pad 256/257/258), theta 10000, max positions 4096, untied
  reference  hidden 512, 8 layers, 8 heads, 2 kv heads, intermediate 1408, vocab 32000
             (bos/eos 1/2), theta 10000, max positions 4096, untied
) or --config-json FILE (a HuggingFace config.json: llama, mistral, qwen2, ...). rms_norm_eps 1e-5.
Initialised by transformers with torch.manual_seed(--seed).

Window: seq_len + 1 random token ids (seeded) give input = w[:T], labels = w[1:]. Documents:
--docs fixed:N | lognormal:MEDIAN:SIGMA (numpy default_rng(--seed); lengths rounded, >= 1, the last
one truncated; NOT the C++ bench's draw) or file:PATH (one length per line, used cyclically). With
--mask anchor, token 0 is the anchor (its own document, as the C++ bench lays it out) and the mask
is k <= q and (doc(k) == doc(q) or k == 0), passed as a [1, 1, T, T] additive float mask in the model
dtype (0 / finfo.min; transformers uses a 4-D mask as given). With --mask causal no mask is passed:
transformers builds the causal one (eager) or uses is_causal (sdpa). Position ids are global
0..T-1 in both cases (the anchor at 0).

--attn sdpa (the default, as in transformers) runs scaled_dot_product_attention: with the anchor
mask as attn_mask (no masked block is skipped), without a mask is_causal; --attn eager forms the
scores in full (2.1x slower at the reference preset's 4K window, docs/PERFORMANCE.md).

--dtype fp32: float32 parameters and compute. --dtype bf16 with --bf16-mode pure (default): the
model in torch.bfloat16 (parameters, activations and AdamW state in bf16; the rotary inv_freq
buffer kept float32, as from_pretrained(dtype=bf16) leaves it); --bf16-mode autocast: float32
parameters and optimizer, forward under torch.autocast("cpu", torch.bfloat16).

Output: one JSON object on stdout: step_ms (median), step_ms_all, tokens_per_s (seq_len / median
step), peak_rss_mb (getrusage ru_maxrss of this process: the peak over the whole run, model
building included; rss_after_imports_mb is the same measure right after importing torch and
transformers), loss_first / loss_last, parameters, documents, torch, transformers, threads,
args.

Example:
  .venv/bin/python tools/peers/torch_train.py --preset tiny --seq-len 512 --mask anchor \
      --steps 5 --warmup 1 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time

from cpu_info import cpu_info  # this folder's module (a script's folder is on sys.path)

PRESETS = {
    "tiny": dict(vocab_size=259, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                 bos_token_id=256, eos_token_id=257, pad_token_id=258),
    "reference": dict(vocab_size=32000, hidden_size=512, intermediate_size=1408,
                      num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                      max_position_embeddings=4096, bos_token_id=1, eos_token_id=2),
}
COMMON = dict(rms_norm_eps=1e-5, tie_word_embeddings=False,
              rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch CPU training-step peer of `anchorctx bench train`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="model preset (default: tiny unless --config-json)")
    src.add_argument("--config-json", default=None, help="a HuggingFace config.json")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens in the window (default 4096)")
    p.add_argument("--mask", choices=("causal", "anchor"), default="anchor")
    p.add_argument("--docs", default="lognormal:1024:1.0",
                   help="fixed:N | lognormal:MEDIAN:SIGMA | file:PATH (default lognormal:1024:1.0)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--bf16-mode", choices=("pure", "autocast"), default="pure")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--attn", choices=("eager", "sdpa"), default="sdpa",
                   help="transformers' attn_implementation (default sdpa, transformers' own "
                        "default and the faster: eager forms every T x T score matrix)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.preset is None and a.config_json is None:
        a.preset = "tiny"
    if a.seq_len < 2:
        p.error("--seq-len must be at least 2")
    if a.steps < 1 or a.warmup < 0 or a.threads < 1:
        p.error("--steps >= 1, --warmup >= 0, --threads >= 1")
    return a


def doc_lengths(spec: str, seq_len: int, anchor_len: int, seed: int) -> list[int]:
    import numpy as np

    kind, _, rest = spec.partition(":")
    if kind == "file":
        with open(rest) as f:
            pool = [int(s) for s in (line.strip() for line in f) if s and not s.startswith("#")]
        if not pool or min(pool) <= 0:
            raise SystemExit(f"--docs {spec!r}: needs positive lengths, one per line")
    rng = np.random.default_rng(seed)
    docs = [anchor_len] if anchor_len else []
    body, total, i = seq_len - anchor_len, 0, 0
    while total < body:
        if kind == "fixed":
            n = int(rest)
        elif kind == "lognormal":
            median, sigma = (float(x) for x in rest.split(":"))
            n = int(round(float(np.exp(np.log(median) + sigma * rng.standard_normal()))))
        elif kind == "file":
            n = pool[i % len(pool)]
            i += 1
        else:
            raise SystemExit(f"--docs {spec!r}: expected fixed:N, lognormal:MEDIAN:SIGMA or file:PATH")
        n = max(1, min(n, body - total))
        docs.append(n)
        total += n
    return docs


def build_config(args):
    import transformers

    if args.config_json:
        with open(args.config_json) as f:
            d = json.load(f)
        d.pop("transformers_version", None)
        cfg = transformers.AutoConfig.for_model(d.pop("model_type"), **d)
    else:
        cfg = transformers.LlamaConfig(**PRESETS[args.preset], **json.loads(json.dumps(COMMON)))
    return cfg


def anchor_mask(docs: list[int], dtype):
    import torch

    T = sum(docs)
    doc = torch.repeat_interleave(torch.arange(len(docs)), torch.tensor(docs))
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    vis = (k <= q) & ((doc[:, None] == doc[None, :]) | (k == 0))
    m = torch.zeros(T, T, dtype=dtype)
    m.masked_fill_(~vis, torch.finfo(dtype).min)
    return m[None, None]


def main(argv=None):
    args = parse_args(argv)
    import torch
    import torch.nn.functional as F
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    rss_baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports

    cfg = build_config(args)
    torch.manual_seed(args.seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation=args.attn)
    pure_bf16 = args.dtype == "bf16" and args.bf16_mode == "pure"
    if pure_bf16:
        # model.to() would round the RoPE inv_freq buffers to bf16 too; from_pretrained(dtype=bf16)
        # keeps them float32, so put the float32 ones back.
        keep = [(mod, name, buf.clone()) for mod in model.modules()
                for name, buf in mod.named_buffers(recurse=False) if "inv_freq" in name]
        model = model.to(torch.bfloat16)
        for mod, name, buf in keep:
            setattr(mod, name, buf)
    model.train()
    mdtype = torch.bfloat16 if pure_bf16 else torch.float32

    T = args.seq_len
    V = cfg.vocab_size
    g = torch.Generator().manual_seed(args.seed)
    window = torch.randint(0, V, (T + 1,), generator=g)
    if cfg.bos_token_id is not None:
        window[0] = cfg.bos_token_id
    input_ids, labels = window[:T][None], window[1:]
    position_ids = torch.arange(T)[None]
    anchor_len = 1 if args.mask == "anchor" else 0
    docs = doc_lengths(args.docs, T, anchor_len, args.seed)
    attention_mask = anchor_mask(docs, mdtype) if args.mask == "anchor" else None

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            eps=1e-8)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16)
                if args.dtype == "bf16" and args.bf16_mode == "autocast" else None)

    def step():
        opt.zero_grad(set_to_none=True)
        if autocast is not None:
            with autocast:
                logits = model(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=False).logits[0]
        else:
            logits = model(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids, use_cache=False).logits[0]
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100)
        loss.backward()
        opt.step()
        return loss.item()

    losses = []
    for _ in range(args.warmup):
        losses.append(step())
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append((time.perf_counter() - t0) * 1e3)

    med = statistics.median(times)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mb = 1024.0 if sys.platform != "darwin" else 2.0**20  # ru_maxrss: KiB on Linux, bytes on macOS
    out = {
        "peer": "torch_train",
        "step_ms": med,
        "step_ms_all": times,
        "tokens_per_s": T / (med / 1e3),
        "peak_rss_mb": rss_kb / mb,
        "rss_after_imports_mb": rss_baseline_kb / mb,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "model_type": cfg.model_type,
        "documents": len(docs),
        "mask_impl": ("4d additive float mask" if attention_mask is not None
                      else "none (transformers' causal)"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "args": vars(args),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
