#!/usr/bin/env python3
"""Writes the PyTorch fixtures for supervised fine-tuning (loss masks and packed examples) into
tests/fixtures/model/sft_<family>.bin.

The models are gen_model_fixture.py's tiny GPT-2 and LLaMA with the same weights (same seed:
tests/fixtures/model/gpt2.llmc.bin and llama.loom.bin hold them). The data is a token stream
of B*T+1 tokens (B = 4 sequences of T = 8, cut as loom's data loader cuts samples) with one
flags byte per token (data/token_flags.h): bit 0 = the token is a counted target, bit 1 = it
starts a packed example. Three variants per family:
  masked          flags with loss bits only: plain causal attention; the loss is the mean over
                  the counted targets of all B sequences (targets without the bit are PyTorch's
                  ignore_index, so F.cross_entropy's mean is exactly that);
  packed          loss bits and document starts: attention is also block-diagonal (a query sees
                  keys of its own example only) and positions restart at 0 at each document
                  start (loom's default, data.reset_position_ids: GPT-2's wpe rows and LLaMA's
                  RoPE angles are those of the example alone);
  packed_noreset  the same, but positions run 0..T-1 across the sample's examples
                  (data.reset_position_ids false); no gradients stored (loss and steps only).
The counts differ between sequences (one sequence has none), so a mean taken per sequence,
per micro-batch or per data-parallel rank differs from the global one.

For each variant: the loss and the gradient of every parameter at the start, and the losses
and gradient norms of STEPS training steps on that batch with gen_model_fixture.py's AdamW
and clipping (train()).

Run with the system Python (Debian python3-torch 1.13):
    /usr/bin/python3 tools/gen_sft_fixture.py            # rewrite the fixtures
    /usr/bin/python3 tools/gen_sft_fixture.py --check    # regenerate, compare, write nothing
"""

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as g  # noqa: E402
from gen_op_fixtures import Fixture  # noqa: E402

B, T = 4, 8
STEPS = 4
LOSS, DOC_START = 1, 2

# The segment ids of the running batch, [B, T] (None: plain causal attention). The models of
# gen_model_fixture.py call causal_attention; packed batches swap in the masked one below.
SEGMENTS = None


def segment_attention(q, k, v):
    nh, nkv, hd, t = q.shape[1], k.shape[1], q.shape[-1], q.shape[2]
    group = nh // nkv
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    mask = torch.ones(t, t, dtype=torch.bool).tril()[None]  # [1, T, T]
    if SEGMENTS is not None:
        mask = mask & (SEGMENTS[:, :, None] == SEGMENTS[:, None, :])  # [B, T, T]
    s = s.masked_fill(~mask[:, None], float("-inf"))
    return torch.softmax(s, dim=-1) @ v


g.causal_attention = segment_attention


def make_flags(packed):
    """Documents of varied length over the stream; in each the first ~40% is prompt (not
    counted) and the rest response (counted). Sequence 2 (tokens 16..24) is prompt only."""
    n = B * T + 1
    starts = [0, 5, 13, 16, 25, 29]
    flags = [0] * n
    for d, s in enumerate(starts):
        e = starts[d + 1] if d + 1 < len(starts) else n
        if packed:
            flags[s] |= DOC_START
        prompt = max(1, int(0.4 * (e - s)))
        if s == 16:
            prompt = e - s  # a document with no counted token
        for i in range(s + prompt, e):
            flags[i] |= LOSS
    return torch.tensor(flags, dtype=torch.int64)


def batch(stream, flags):
    """inputs, targets (-100 = not counted) and segment ids, as data/data_loader.cc makes them."""
    tokens = torch.stack([stream[b * T:b * T + T] for b in range(B)])
    targets = torch.stack([stream[b * T + 1:b * T + T + 1] for b in range(B)]).clone()
    segs = torch.zeros(B, T, dtype=torch.int64)
    for b in range(B):
        seg = 0
        for i in range(T):
            f = int(flags[b * T + i])
            if i > 0 and f & DOC_START:
                seg += 1
            segs[b, i] = seg
            if not int(flags[b * T + i + 1]) & LOSS:
                targets[b, i] = -100
    return tokens, targets, segs


def reset_positions(segs):
    """position = index - the index where its segment begins (train/step_batches.h)."""
    pos = torch.zeros_like(segs)
    for b in range(segs.shape[0]):
        start = 0
        for i in range(segs.shape[1]):
            if i > 0 and segs[b, i] != segs[b, i - 1]:
                start = i
            pos[b, i] = i - start
    return pos


def build(name, cfg, seed):
    global SEGMENTS
    gen = torch.Generator().manual_seed(seed)
    params = g.random_params(cfg, gen)  # the weights of gen_model_fixture.py's model files
    params32 = {n: t.detach().to(torch.float32) for n, t in params.items()}
    data_gen = torch.Generator().manual_seed(seed + 100)
    stream = torch.randint(0, cfg["vocab"], (B * T + 1,), generator=data_gen, dtype=torch.int64)
    fx = Fixture("sft_" + name)
    fx.i32("stream", stream)
    fx.i32("B", B)
    fx.i32("T", T)
    for variant in ("masked", "packed", "packed_noreset"):
        packed = variant != "masked"
        flags = make_flags(packed)
        tokens, targets, segs = batch(stream, flags)
        SEGMENTS = segs if packed else None
        g.POSITIONS = reset_positions(segs) if variant == "packed" else None
        p = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
        loss = g.loss_of(cfg, g.forward(cfg, p, tokens), targets)
        loss.backward()
        fx.i32(variant + "/flags", flags)
        fx.i32(variant + "/targets", targets.clamp(min=-1))
        fx.i32(variant + "/segments", segs)
        fx.f32(variant + "/loss", loss.item())
        if variant == "packed":
            fx.i32(variant + "/positions", g.POSITIONS)
        for pname, _, _ in g.param_specs(cfg):
            if variant != "packed_noreset":
                fx.f32(variant + "/grad/" + pname, p[pname].grad)
        p = {n: t.to(torch.float64).requires_grad_(True) for n, t in params32.items()}
        saved, g.STEPS = g.STEPS, STEPS
        losses, norms, _ = g.train(cfg, p, tokens, targets)
        g.STEPS = saved
        fx.f32(variant + "/step_losses", torch.tensor(losses))
        fx.f32(variant + "/grad_norms", torch.tensor(norms))
        counted = int((targets >= 0).sum())
        print("%s %s: %d counted targets of %d, loss %.6f, steps %s" %
              (name, variant, counted, B * T, loss.item(),
               " ".join("%.4f" % v for v in losses)))
    SEGMENTS = None
    g.POSITIONS = None
    return {"sft_%s.bin" % name: fx.encode()}


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
