#!/usr/bin/env python3
"""Reads an anchorctx TensorBoard run folder with tensorboard's own EventAccumulator.

Usage: read_tensorboard.py RUN_DIR EXPECTED_JSON
EXPECTED_JSON: {"scalars": {tag: [[step, value], ...]}}, values as float32 would hold them.
EventAccumulator checks the TFRecord CRCs and parses the Event protos with tensorboard's
generated protobuf classes; it must find the file_version event and exactly the expected tags,
steps and values (float32, so compared exactly). Exit 0 when everything matches.
"""
import json
import math
import sys

from tensorboard.backend.event_processing import event_accumulator


def main() -> int:
    run_dir, expected_path = sys.argv[1], sys.argv[2]
    expected = json.load(open(expected_path))["scalars"]
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    assert acc.file_version == 2.0, acc.file_version
    tags = acc.Tags()["scalars"]
    assert sorted(tags) == sorted(expected), (tags, sorted(expected))
    for tag, want in expected.items():
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want], (tag, got, want)
        for (step, value), (_, want_value) in zip(got, want):
            ok = math.isnan(value) if want_value is None else value == want_value
            assert ok, (tag, step, value, want_value)
    wall = [e.wall_time for tag in expected for e in acc.Scalars(tag)]
    assert all(w > 1.6e9 for w in wall), wall  # seconds since 1970, written as a double
    print(f"read {sum(len(v) for v in expected.values())} scalars under {len(expected)} tags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
