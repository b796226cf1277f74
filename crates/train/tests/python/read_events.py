"""Reads the scalars of a TensorBoard log folder with PyPI tensorboard's EventAccumulator (the
reader behind `tensorboard --logdir`) and prints them as JSON: {tag: [[step, value], ...]}.

usage: python read_events.py LOGDIR
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
