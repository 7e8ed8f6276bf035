#!/usr/bin/env python3
"""Reads a Hugging Face directory that `loom export --format hf` wrote back with the
`transformers` library and checks its loss on a fixture's batch.

    check_hf_export.py DIR,FIXTURE.bin,ARCH,DTYPE [DIR,FIXTURE.bin,ARCH,DTYPE ...] [--rtol 1e-5]

(ARCH: GPT2LMHeadModel or LlamaForCausalLM; DTYPE: float32, bfloat16 or float16; one process
for all, as importing transformers takes seconds.)

The model is loaded with AutoModelForCausalLM.from_pretrained (so config.json, the
safetensors names and shapes, the shards' index and the tied or untied head must be as
transformers expects them), its stored dtype checked against DTYPE, then run in float64 on
the fixture's `tokens`; the mean cross-entropy against `targets` must equal the fixture's
`loss` (written by tools/gen_model_fixture.py or tools/gen_hf_fixtures.py from an independent
model) within rtol. Prints the loss; exits 1 on a mismatch, 77 when torch or transformers is
missing (ctest: skipped).
"""
import argparse
import json
import os
import struct
import sys

try:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError as e:  # pragma: no cover
    print("skipped: %s" % e)
    sys.exit(77)


def read_fixture(path):
    """LOOMFIX1 (tools/gen_op_fixtures.py): name -> tensor (float32 or int32)."""
    data = open(path, "rb").read()
    assert data[:8] == b"LOOMFIX1", path + ": not a LOOMFIX1 fixture"
    (count,), at = struct.unpack_from("<I", data, 8), 12
    out = {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", data, at)
        at += 4
        name = data[at:at + n].decode()
        at += n
        code, dims = struct.unpack_from("<II", data, at)
        at += 8
        shape = struct.unpack_from("<%dq" % dims, data, at)
        at += 8 * dims
        numel = 1
        for d in shape:
            numel *= d
        vals = struct.unpack_from("<%d%s" % (numel, "f" if code == 0 else "i"), data, at)
        at += 4 * numel
        out[name] = torch.tensor(vals, dtype=torch.float64 if code == 0 else torch.int64)
        out[name] = out[name].reshape(shape)
    return out


def check(d, fixture, arch, dtype, rtol):
    fx = read_fixture(fixture)
    cfg = json.load(open(os.path.join(d, "config.json")))
    if cfg.get("architectures") != [arch]:
        print("FAIL: %s: architectures %s, expected [%s]" % (d, cfg.get("architectures"), arch))
        return False
    stored = AutoModelForCausalLM.from_pretrained(d, torch_dtype="auto")
    got_dtype = str(next(stored.parameters()).dtype).replace("torch.", "")
    if got_dtype != dtype:
        print("FAIL: %s: the weights load as %s, expected %s" % (d, got_dtype, dtype))
        return False
    model = stored.double().eval()
    with torch.no_grad():
        logits = model(input_ids=fx["tokens"]).logits
    vocab = cfg["vocab_size"]
    loss = F.cross_entropy(logits.reshape(-1, vocab), fx["targets"].reshape(-1)).item()
    want = fx["loss"].item()
    ok = abs(loss - want) <= rtol * abs(want)
    print("%s: %s (%s, transformers %s) loss %.7f, reference %.7f: %s" %
          (d, type(model).__name__, got_dtype, transformers.__version__, loss, want,
           "ok" if ok else "MISMATCH"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="+", help="DIR,FIXTURE,ARCH,DTYPE")
    ap.add_argument("--rtol", type=float, default=1e-5)
    a = ap.parse_args()
    ok = True
    for case in a.cases:
        d, fixture, arch, dtype = case.split(",")
        ok = check(d, fixture, arch, dtype, a.rtol) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
