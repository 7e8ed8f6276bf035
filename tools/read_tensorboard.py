#!/usr/bin/env python3
"""Reads loom's TensorBoard event files back with the real `tensorboard` package.

Prints every scalar as "TAG STEP VALUE" and checks the file the way TensorBoard will read it:
the raw record reader (which verifies both CRCs of every record) must consume each file to its
last byte, the first event must carry file_version "brain.Event:2", and TensorBoard's own
EventAccumulator supplies the scalars.

usage: read_tensorboard.py PATH [--expect TAG@STEP=VALUE ...] [--rtol R]
  PATH      a run directory (every events.out.tfevents.* in it) or one event file
  --expect  a scalar that must be present with this value (relative tolerance --rtol,
            default 1e-6); may be repeated
Exit status: 0 when all checks hold, 1 when one fails, 77 when the tensorboard package is not
installed (ctest's skip code; `pip install tensorboard`).
"""

import argparse
import glob
import math
import os
import sys

SKIP = 77


def fail(msg):
    print(f"read_tensorboard: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def event_files(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*tfevents*")))
        if not files:
            fail(f"no events.out.tfevents.* file in {path}")
        return files
    if not os.path.exists(path):
        fail(f"{path} does not exist")
    return [path]


def check_raw(path, event_file_loader):
    """Every record must be read (a CRC or length error stops the reader early)."""
    loader = event_file_loader.RawEventFileLoader(path)
    consumed = 0
    records = list(loader.Load())
    for record in records:
        consumed += len(record) + 16  # length, length crc, data, data crc
    size = os.path.getsize(path)
    if consumed != size:
        fail(f"{path}: TensorBoard's reader stopped at byte {consumed} of {size} "
             "(bad length or CRC there)")
    if not records:
        fail(f"{path}: no records")
    from tensorboard.compat.proto import event_pb2

    first = event_pb2.Event.FromString(records[0])
    if first.file_version != "brain.Event:2":
        fail(f"{path}: first event has file_version {first.file_version!r}, "
             "expected 'brain.Event:2'")
    return len(records)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path")
    parser.add_argument("--expect", action="append", default=[],
                        help="TAG@STEP=VALUE that must be present")
    parser.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args()

    try:
        from tensorboard.backend.event_processing import event_accumulator, event_file_loader
    except ImportError as e:
        print(f"SKIP: the tensorboard package is not installed ({e}); pip install tensorboard")
        return SKIP

    scalars = {}  # (tag, step) -> value
    for path in event_files(args.path):
        n = check_raw(path, event_file_loader)
        acc = event_accumulator.EventAccumulator(
            path, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        print(f"{path}: {n} records, scalar tags: {', '.join(sorted(tags))}")
        for tag in sorted(tags):
            for ev in acc.Scalars(tag):
                scalars[(tag, ev.step)] = ev.value
                print(f"{tag} {ev.step} {ev.value:.9g}")

    for spec in args.expect:
        try:
            key, value = spec.rsplit("=", 1)
            tag, step = key.rsplit("@", 1)
            step, value = int(step), float(value)
        except ValueError:
            fail(f"bad --expect {spec!r}: want TAG@STEP=VALUE")
        if (tag, step) not in scalars:
            fail(f"no scalar {tag} at step {step}")
        got = scalars[(tag, step)]
        if not math.isclose(got, value, rel_tol=args.rtol, abs_tol=0.0):
            fail(f"{tag} at step {step} is {got!r}, expected {value!r}")
    if args.expect:
        print(f"read_tensorboard: {len(args.expect)} expectation(s) hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
