#!/usr/bin/env python3
"""The docs/rope-drift.md summary table from `anchorctx rope-drift` report folders.

    tools/docs/rope_drift_table.py "stories260K=docs/rope-drift/stories260k" \
        "random init (seed 1)=docs/rope-drift/random-init" ...

Reads each folder's report.json (standard library only) and prints one Markdown row per model,
mode and policy: mean D and D excl. first over delta1 != delta2, D min / max, the first token's
share, rank and the largest other key, the mean attention on the first key, and D_logit at
lengths 64 / 256 / 1024 / T.
"""
import json
import sys
from pathlib import Path


def rows(name, report):
    lengths = [64, 256, 1024, report["seq_len"]]
    keys = []
    for r in report["results"]:
        k = (r["mode"], r["policy"])
        if k not in keys:
            keys.append(k)
    shares = {(s["mode"], s["policy"]): s for s in report["first_token_share"]}
    for mode, policy in keys:
        rs = [r for r in report["results"]
              if (r["mode"], r["policy"]) == (mode, policy) and r["delta1"] != r["delta2"]]
        d = [r["D"] for r in rs]
        excl = [r["D_excl_first"] for r in rs]
        s = shares[(mode, policy)]
        logit = {g["T"]: g["D_logit"] for g in report["logit_growth"]
                 if (g["mode"], g["policy"]) == (mode, policy)}
        yield (f"| {name} | {mode}/{policy} | {sum(d) / len(d):.3g} | {sum(excl) / len(excl):.3g} "
               f"| {min(d):.3g} / {max(d):.3g} | {s['share']:.3f} ({s['rank']}; key "
               f"{s['largest_other_token']} {s['largest_other_share']:.3f}) "
               f"| {100 * s.get('first_key_attention', float('nan')):.2f}% | "
               + " / ".join(f"{logit[n]:.3g}" for n in lengths if n in logit) + " |")


def main():
    print("| model | mode/policy | mean D | D excl. first | D min / max | first-token share "
          "(rank; largest other) | attention on the first key | D_logit 64 / 256 / 1024 / T |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for arg in sys.argv[1:]:
        name, _, folder = arg.partition("=")
        report = json.loads((Path(folder) / "report.json").read_text())
        for row in rows(name, report):
            print(row)


if __name__ == "__main__":
    main()
