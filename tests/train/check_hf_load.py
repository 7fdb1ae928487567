#!/usr/bin/env python3
"""Loads an anchorctx checkpoint folder with transformers, as a user would.

Usage: check_hf_load.py CHECKPOINT_DIR EXPECTED_JSON
EXPECTED_JSON: {"architecture", "num_parameters", "tensor", "shape", "values" (the tensor's
float32 values, flattened), "input_ids", "logits" ([len(input_ids)][vocab], anchorctx's float32
inference), "atol"}.

AutoModelForCausalLM.from_pretrained must load the folder with no missing, unexpected or
mismatched keys; the parameter count and the named tensor must equal what was saved (exactly);
a forward over input_ids must give anchorctx's logits to within atol. Exit 0 when all holds.
"""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main() -> int:
    folder, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, output_loading_info=True
    )
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(kind), (kind, info.get(kind))
    assert type(model).__name__ == expected["architecture"], type(model).__name__
    assert model.num_parameters() == expected["num_parameters"], (
        model.num_parameters(),
        expected["num_parameters"],
    )

    tensor = model.state_dict()[expected["tensor"]]
    assert tensor.dtype == torch.float32, tensor.dtype
    assert list(tensor.shape) == expected["shape"], (list(tensor.shape), expected["shape"])
    want = torch.tensor(expected["values"], dtype=torch.float64)
    got = tensor.detach().flatten().to(torch.float64)
    assert torch.equal(got, want), (got - want).abs().max().item()

    model.eval()
    with torch.no_grad():
        ids = torch.tensor([expected["input_ids"]], dtype=torch.long)
        logits = model(input_ids=ids).logits[0].to(torch.float64)
    want_logits = torch.tensor(expected["logits"], dtype=torch.float64)
    assert logits.shape == want_logits.shape, (logits.shape, want_logits.shape)
    assert torch.isfinite(logits).all()
    diff = (logits - want_logits).abs().max().item()
    assert diff <= expected["atol"], f"logits differ by {diff} > {expected['atol']}"
    name, count = type(model).__name__, model.num_parameters()
    print(f"ok {name}: {count} parameters, logits within {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
