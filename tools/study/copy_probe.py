#!/usr/bin/env python3
"""Does a byte model copy from its context yet? (docs/STUDY.md: why stage 0 does not learn the lookup)

Needs torch and transformers (pip install torch transformers safetensors) except for `corpus`.

  copy_probe.py corpus OUT.jsonl [--docs N]
      The copy task: documents "w1 w2 ... wk. w1 w2 ... wk." of 2-8 random five-letter words.
      A model that copies predicts the second half almost free; one that does not pays about
      ln 26 nats per letter on both halves.
  copy_probe.py probe MODEL_DIR
      On a checkpoint (a transformers-loadable model folder of the byte tokenizer, bos 256):
      - copy: nats per byte on the first and the second copy of random strings as above;
      - lookup: the loss of the value's first letter after 4 `key K is V.` lines and a question
        about one of them, with that key's line present, and replaced by another key's line
        (present < absent only if the model reads the value from the context), for the corpus's
        question ("what is key K?") and for a repeat of the line ("recall key K is").
  copy_probe.py torch-train DATA.jsonl CONFIG_JSON [--steps N]
      The same Llama from CONFIG_JSON trained by transformers in float32 on the windows of
      DATA.jsonl (bos + 512 bytes, shuffled), AdamW lr 2e-3 (warm-up 20, cosine to 2e-4 over 600
      steps), batch 8: the loss curve to compare with `anchorctx train` on the same data.
  copy_probe.py torch-rows CONFIG_JSON [--fixed-offset] [--steps N]
      The same Llama trained by transformers on rows of bos + 64 random letters holding a string
      of 8-32 letters twice in a row, at a random place (the second copy's offset back to the
      first varies: only matching content finds it), or with --fixed-offset a 32-letter string
      twice (the offset is always 32: position alone finds it). AdamW lr 2e-3, batch 64 rows.
"""
import argparse
import json
import math
import random

LETTERS = "abcdefghijklmnopqrstuvwxyz"
# The built-in corpus's values (src/data/builtin_corpus.cpp, kValues).
VALUES = ("apple banana cherry grape lemon mango melon orange peach pear plum berry red blue green "
          "yellow purple pink brown black white gold silver cat dog bird fox bear frog duck mouse owl "
          "horse lion tiger whale shark snake goat sheep ball book cake kite boat train drum hat shoe "
          "cup lamp chair table clock bell ring key map coin star moon sun cloud rain snow wind river "
          "hill tree rock sand shell stone glass paper bread milk honey salt soup").split()
BOS = 256


def random_words(rng, count):
    return " ".join("".join(rng.choice(LETTERS) for _ in range(5)) for _ in range(count))


def corpus(args):
    rng = random.Random(5)
    with open(args.out, "w") as f:
        for _ in range(args.docs):
            s = random_words(rng, rng.randint(2, 8))
            f.write(json.dumps({"text": f"{s}. {s}."}) + "\n")


def token_losses(model, ids):
    import torch
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return [-logp[i, ids[i + 1]].item() for i in range(len(ids) - 1)]


def probe(args):
    import torch
    from transformers import LlamaForCausalLM
    torch.set_num_threads(1)
    model = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    rng = random.Random(1)
    first = second = 0.0
    for _ in range(args.trials):
        s = random_words(rng, 8)
        ids = [BOS] + list(f"{s}. {s}.".encode())
        loss = token_losses(model, ids)
        n = len(s)  # loss[i] predicts ids[i + 1]: the first copy is bytes 1..n-1, the second n+3..2n+1
        first += sum(loss[1:n]) / (n - 1)
        second += sum(loss[n + 3:2 * n + 2]) / (n - 1)
    print(f"copy: first copy {first / args.trials:.2f} nats/byte, second copy "
          f"{second / args.trials:.2f}")
    for name, ask in (("question", "what is key {}?"), ("repeat", "recall key {} is")):
        rng = random.Random(2)
        result = {}
        for present in (True, False):
            total = 0.0
            for _ in range(args.trials):
                keys = rng.sample(range(1000, 10000), 5)
                values = [rng.choice(VALUES) for _ in keys]
                q = rng.randrange(4)
                lines = [f"key {k} is {v}.\n" for k, v in zip(keys, values)]
                if not present:
                    lines[q] = lines[4]
                prompt = "".join(lines[:4]) + ask.format(keys[q])
                ids = [BOS] + list(prompt.encode()) + list((" " + values[q]).encode())
                total += token_losses(model, ids)[len(prompt) + 1]  # the value's first letter
            result[present] = total / args.trials
        print(f"lookup ({name}): first letter of the value {result[True]:.2f} nats with its line, "
              f"{result[False]:.2f} without")


def new_model(config_path):
    """A transformers Llama from a config.json, seeded, one thread, with the AdamW of the study."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = LlamaForCausalLM(LlamaConfig(**json.load(open(config_path))))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    return model, opt


def torch_train(args):
    import torch
    model, opt = new_model(args.config)
    stream = []
    for line in open(args.data):
        stream += list(json.loads(line)["text"].encode())
    windows = [[BOS] + stream[i:i + 512] for i in range(0, len(stream) - 512, 512)]
    random.Random(0).shuffle(windows)
    for step in range(args.steps):
        lr = (2e-3 * (step + 1) / 20 if step < 20 else
              2e-4 + 0.9e-3 * (1 + math.cos(math.pi * (step - 20) / 580)))
        for group in opt.param_groups:
            group["lr"] = lr
        batch = [windows[(step * 8 + j) % len(windows)] for j in range(8)]
        x = torch.tensor(batch)
        loss = model(input_ids=x, labels=x).loss  # transformers shifts the labels
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            print(f"step {step + 1} loss {loss.item():.4f}", flush=True)


def torch_rows(args):
    import torch
    model, opt = new_model(args.config)
    half, batch = 32, 64
    for step in range(args.steps):
        if args.fixed_offset:
            x = torch.randint(97, 123, (batch, half))
            x = torch.cat([torch.full((batch, 1), BOS), x, x], 1)
        else:
            rows = []
            for _ in range(batch):
                n = int(torch.randint(8, 33, ()).item())
                s = torch.randint(97, 123, (n,))
                filler = torch.randint(97, 123, (2 * half - 2 * n,))
                rows.append(torch.cat([torch.tensor([BOS]), filler[:half - n], s, s,
                                       filler[half - n:]]))
            x = torch.stack(rows)
        logp = torch.log_softmax(model(input_ids=x).logits[:, :-1], -1)
        loss = -logp.gather(-1, x[:, 1:, None]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("corpus")
    p.add_argument("out")
    p.add_argument("--docs", type=int, default=20000)
    p.set_defaults(run=corpus)
    p = sub.add_parser("probe")
    p.add_argument("model")
    p.add_argument("--trials", type=int, default=200)  # as in docs/STUDY.md
    p.set_defaults(run=probe)
    p = sub.add_parser("torch-train")
    p.add_argument("data")
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=300)
    p.set_defaults(run=torch_train)
    p = sub.add_parser("torch-rows")
    p.add_argument("config")
    p.add_argument("--fixed-offset", action="store_true")
    p.add_argument("--steps", type=int, default=1000)
    p.set_defaults(run=torch_rows)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
