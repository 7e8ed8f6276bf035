#!/usr/bin/env python3
"""Writes PyTorch greedy-decoding fixtures for `loom generate` into
tests/fixtures/model/generate_<family>.bin.

The models are gen_model_fixture.py's tiny GPT-2 and LLaMA with the same weights (same seed:
tests/fixtures/model/gpt2.llmc.bin and llama.loom.bin hold them). From a prompt of PROMPT
random tokens, NEW tokens are decoded greedily in float64, each step running the whole
sequence through the model (no cache) and taking the argmax of the last row's logits over the
real vocabulary. Stored: "prompt", "tokens" (the NEW decoded ids), "logits" (the last row's
logits of every step, [NEW, vocab]) and "margins" (top-1 minus top-2 logit per step; the
script insists on a margin that float32 rounding cannot flip).

Run with the system Python (Debian python3-torch 1.13):
    /usr/bin/python3 tools/gen_generate_fixture.py            # rewrite the fixtures
    /usr/bin/python3 tools/gen_generate_fixture.py --check    # regenerate, compare, write nothing
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as g  # noqa: E402
from gen_op_fixtures import Fixture  # noqa: E402

PROMPT, NEW = 4, 12  # 16 = the fixture models' max_seq
MIN_MARGIN = 1e-3


def build(name, cfg, seed):
    gen = torch.Generator().manual_seed(seed)
    params = g.random_params(cfg, gen)  # the weights of gen_model_fixture.py's model files
    p = {n: t.detach().to(torch.float64) for n, t in params.items()}
    prompt = torch.randint(0, cfg["vocab"], (PROMPT,),
                           generator=torch.Generator().manual_seed(seed + 200), dtype=torch.int64)
    seq = prompt.tolist()
    out, logits, margins = [], [], []
    with torch.no_grad():
        for _ in range(NEW):
            last = g.forward(cfg, p, torch.tensor([seq]))[-1, :cfg["vocab"]]
            top2 = torch.topk(last, 2).values
            margins.append(float(top2[0] - top2[1]))
            nxt = int(torch.argmax(last))
            out.append(nxt)
            logits.append(last)
            seq.append(nxt)
    assert min(margins) > MIN_MARGIN, (name, min(margins))
    fx = Fixture("generate_" + name)
    fx.i32("prompt", prompt)
    fx.i32("tokens", torch.tensor(out))
    fx.f32("logits", torch.stack(logits))
    fx.f32("margins", torch.tensor(margins))
    print("%s: prompt %s -> %s (smallest margin %.4f)" % (name, prompt.tolist(), out, min(margins)))
    return {"generate_%s.bin" % name: fx.encode()}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "model"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and report files that would change")
    args = ap.parse_args()
    torch.set_default_dtype(torch.float64)
    files = {}
    files.update(build("gpt2", g.GPT2, g.SEED))
    files.update(build("llama", g.LLAMA, g.SEED + 1))
    changed = []
    for fname, data in sorted(files.items()):
        path = os.path.join(args.out, fname)
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != data:
            changed.append(fname)
            if not args.check:
                with open(path, "wb") as f:
                    f.write(data)
    print("%s: %s" % ("would change" if args.check else "written", ", ".join(changed) or "none"))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
