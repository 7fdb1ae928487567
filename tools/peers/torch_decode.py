#!/usr/bin/env python3
"""PyTorch peer of anchorctx's decoding (eval's answers, `generate`): transformers' greedy
`generate` on the CPU, float32, 2 threads, for B = 1 and 4 equal-length prompts (no padding),
200 new tokens each (EOS ignored), the KV cache on. Usage: torch_decode.py MODEL_DIR PROMPT_LEN.
Prints ms per step and decoded tokens/s (the prompt's prefill included; docs/PERFORMANCE.md).
"""
import sys, time, torch
from transformers import AutoModelForCausalLM
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32, attn_implementation="sdpa").eval()
prompt_len, new = int(sys.argv[2]), 200
for B in (1, 4):
    ids = torch.stack([(torch.arange(prompt_len) * 7919 + b * 13) % 31000 + 3 for b in range(B)])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        s = time.perf_counter() - t
    print(f"transformers B={B} prompt={prompt_len}: {s / new * 1e3:.2f} ms/step, {B * new / s:.1f} tok/s")
