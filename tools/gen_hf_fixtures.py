#!/usr/bin/env python3
"""Writes Hugging Face model fixtures for loom's HF reader and writer into tests/fixtures/hf/.

The models are built and saved by the `transformers` library itself (GPT2LMHeadModel,
LlamaForCausalLM; `save_pretrained` with safetensors), so loom is checked against the real
names, layouts and files, not against a re-implementation:

  gpt2_f32/            GPT-2: C=32, 2 layers, 4 heads, vocab 64 (unpadded), 16 positions,
                       tied head, gelu_new; float32, one model.safetensors.
  gpt2_bf16_sharded/   the same weights in bfloat16, sharded (model.safetensors.index.json).
  llama_f32/           LLaMA: C=32, 2 layers, 4 heads, 2 kv heads, ffn 48, vocab 64,
                       untied lm_head, rope_theta 10000, rms_norm_eps 1e-5; float32.
  llama_f16_sharded/   the same weights in float16, sharded.
  llama_bf16/          the same weights in bfloat16, one file.

Weights: transformers' own init, then every tensor redrawn from a fixed seed (float32, larger
than a real init so the loss is not just ln(vocab): matrices N(0, 0.15^2), embeddings
N(0, 0.3^2), norm weights 1 + N(0, 0.1^2), biases N(0, 0.05^2)). The 16-bit directories hold
those weights rounded by PyTorch's `.to(dtype)` (round to nearest even), so `loom export
--dtype bf16|f16` of the float32 model must write the same bytes.

Beside each directory, <name>.bin (LOOMFIX1, tools/gen_op_fixtures.py; read by
tests/ops/fixture.h) holds the config scalars as loom's GptConfig names them (padded_vocab =
vocab), the token stream, a batch (B=2, T=8, cut as loom's loader cuts samples), and
transformers' logits [B*T, vocab] and mean cross-entropy on it, computed in float64 from the
directory's weights as stored (the model loaded by `from_pretrained` with torch_dtype float64).

Run with the system Python (Debian python3-torch 1.13) and transformers < 4.45:
    /usr/bin/python3 -m pip install --break-system-packages "transformers<4.45"
    /usr/bin/python3 tools/gen_hf_fixtures.py            # rewrite tests/fixtures/hf/
    /usr/bin/python3 tools/gen_hf_fixtures.py --check    # regenerate in a temp dir, compare
"""

import argparse
import copy
import filecmp
import os
import shutil
import struct
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_op_fixtures import Fixture  # noqa: E402

import transformers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

SEED = 20261206
B, T = 2, 8
VOCAB = 64


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def gpt2_model():
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    return GPT2LMHeadModel(cfg)


def llama_model():
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg)


def randomize(model, gen):
    """Redraws every parameter (tied ones once) in float32 from `gen`."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # shared parameters are listed once
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 2:
                emb = "wte" in name or "embed_tokens" in name or "lm_head" in name
                p.copy_(r * (0.3 if emb else 0.15))
            elif "ln" in name or "norm" in name:
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.05 * r)


def loom_config(model):
    c = model.config
    if c.model_type == "gpt2":
        return dict(family=0, layers=c.n_layer, heads=c.n_head, kv_heads=c.n_head, hidden=c.n_embd,
                    ffn_hidden=c.n_inner or 4 * c.n_embd, vocab=c.vocab_size,
                    padded_vocab=c.vocab_size, max_seq=c.n_positions, tied=1,
                    norm_eps=c.layer_norm_epsilon, rope_theta=10000.0)
    return dict(family=1, layers=c.num_hidden_layers, heads=c.num_attention_heads,
                kv_heads=c.num_key_value_heads, hidden=c.hidden_size,
                ffn_hidden=c.intermediate_size, vocab=c.vocab_size, padded_vocab=c.vocab_size,
                max_seq=c.max_position_embeddings, tied=int(c.tie_word_embeddings),
                norm_eps=c.rms_norm_eps, rope_theta=c.rope_theta)


def save(model, dtype, out_dir, shard):
    m = copy.deepcopy(model).to(dtype)  # the float32 model stays as drawn for the next dtype
    kwargs = dict(safe_serialization=True)
    if shard:
        kwargs["max_shard_size"] = "20KB"
    m.save_pretrained(out_dir, **kwargs)
    # Only what loom reads: config.json and the weights (generation defaults are not a model).
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)


def reference(cls, out_dir, name, cfg, stream):
    """transformers' logits and loss in float64 from the directory's weights as stored."""
    model = cls.from_pretrained(out_dir, torch_dtype=torch.float64)
    model.eval()
    tokens = torch.stack([stream[b * T:b * T + T] for b in range(B)])
    targets = torch.stack([stream[b * T + 1:b * T + T + 1] for b in range(B)])
    with torch.no_grad():
        logits = model(input_ids=tokens).logits.reshape(B * T, -1)
    loss = F.cross_entropy(logits, targets.reshape(-1))
    fx = Fixture(name)
    for key in ("family", "layers", "heads", "kv_heads", "hidden", "ffn_hidden", "vocab",
                "padded_vocab", "max_seq", "tied"):
        fx.i32(key, cfg[key])
    fx.f32("norm_eps", f32(cfg["norm_eps"]))
    fx.f32("rope_theta", f32(cfg["rope_theta"]))
    fx.i32("stream", stream)
    fx.i32("tokens", tokens)
    fx.i32("targets", targets)
    fx.f32("logits", logits)
    fx.f32("loss", loss.item())
    print("%s: loss %.6f" % (name, loss.item()))
    return fx.encode()


def build(out):
    written = []
    for family, make, cls, variants in (
            ("gpt2", gpt2_model, GPT2LMHeadModel,
             [("f32", torch.float32, False), ("bf16_sharded", torch.bfloat16, True)]),
            ("llama", llama_model, LlamaForCausalLM,
             [("f32", torch.float32, False), ("f16_sharded", torch.float16, True),
              ("bf16", torch.bfloat16, False)])):
        gen = torch.Generator().manual_seed(SEED + (0 if family == "gpt2" else 1))
        torch.manual_seed(SEED)  # transformers' own init, overwritten below
        model = make()
        randomize(model, gen)
        stream = torch.randint(0, VOCAB, (B * T + 1,), generator=gen, dtype=torch.int64)
        cfg = loom_config(model)
        for suffix, dtype, shard in variants:
            name = "%s_%s" % (family, suffix)
            d = os.path.join(out, name)
            if os.path.exists(d):
                shutil.rmtree(d)
            save(model, dtype, d, shard)
            with open(os.path.join(out, name + ".bin"), "wb") as f:
                f.write(reference(cls, d, name, cfg, stream))
            written.append(name)
    return written


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "hf"))
    ap.add_argument("--check", action="store_true",
                    help="regenerate in a temporary directory and report what would change")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.check:
        os.makedirs(args.out, exist_ok=True)
        names = build(args.out)
        print("written: %s (torch %s, transformers %s)" %
              (", ".join(names), torch.__version__, transformers.__version__))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(tmp)
        cmp = filecmp.dircmp(tmp, args.out)
        changed = list(cmp.diff_files) + list(cmp.left_only)
        for sub, sc in cmp.subdirs.items():
            changed += [os.path.join(sub, f) for f in sc.diff_files + sc.left_only + sc.right_only]
        print("would change: %s" % (", ".join(changed) or "none"))
        return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
