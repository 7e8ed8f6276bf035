#!/usr/bin/env python3
"""Writes the fixtures for `loom generate` with real tokenizers into tests/fixtures/hf/.

Two tiny random models written by `transformers` (save_pretrained, safetensors), with the
vocabulary of a committed tokenizer fixture (tests/fixtures/tokenizer/, gen_tokenizer_fixtures.py):

  gpt2_tok/    GPT2LMHeadModel, C=32, 2 layers, 4 heads, 64 positions, vocab 1004 = the byte-level
               BPE gpt2.tokenizer.json (no begin-of-text; <|endoftext|> = 1003); bfloat16.
  llama_sp/    LlamaForCausalLM, C=32, 2 layers, 4 heads, 2 kv heads, 64 positions, vocab 800 =
               the SentencePiece sp.model (<s> = 1 begins the prompt, </s> = 2); bfloat16.

Weights are drawn as gen_hf_fixtures.py draws them (larger than a real init, so the greedy
choice is not a near-tie; GPT-2's embedding smaller, its matrices larger, see GPT2_SEED). The directories hold no tokenizer: the test puts one beside the
weights (or passes --tokenizer), so the tokenizer files are committed once.

generate_tok.tsv holds one line per case: name, model directory, tokenizer file (relative to
tests/fixtures), the prompt (UTF-8 in hex), the prompt ids as the reference library encodes
them (`tokenizers` encode(add_special_tokens=False); sentencepiece EncodeAsIds with <s>
prepended, as transformers' LLaMA tokenizer does), the greedy ids, and the generated text in
hex. Greedy ids: transformers' model.generate(do_sample=False) of the model loaded in float64
(checked against a full-recompute argmax loop, whose top-1 minus top-2 margin must exceed
MIN_MARGIN at every step so float32 rounding cannot flip a choice), stopping at end-of-text.
Text: `tokenizers`' decode(new ids) for BPE (lossy UTF-8, U+FFFD for broken characters);
for SentencePiece, decode(prompt + new) after decode(prompt) (so the new text keeps its
leading space).

Run with the system Python (Debian python3-torch 1.13), transformers < 4.45, tokenizers,
sentencepiece:
    /usr/bin/python3 tools/gen_generate_tok_fixture.py            # rewrite the fixtures
    /usr/bin/python3 tools/gen_generate_tok_fixture.py --check    # regenerate, compare
"""

import argparse
import copy
import filecmp
import os
import shutil
import sys
import tempfile

import torch

import sentencepiece as spm
import transformers
from tokenizers import Tokenizer
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SEED = 20261207
# A tied GPT-2 head with gen_hf_fixtures.py's scales repeats one token; these give a varied
# greedy run whose bytes break UTF-8 characters (U+FFFD in the text) and hold control bytes.
GPT2_SEED = 20261209
NEW = 24
MIN_MARGIN = 1e-3


def randomize(model, gen, emb_scale=0.3, matrix_scale=0.15):
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 2:
                emb = "wte" in name or "embed_tokens" in name or "lm_head" in name
                p.copy_(r * (emb_scale if emb else matrix_scale))
            elif "ln" in name or "norm" in name:
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.05 * r)


def save(model, out_dir):
    m = copy.deepcopy(model).to(torch.bfloat16)
    m.save_pretrained(out_dir, safe_serialization=True)
    gen_cfg = os.path.join(out_dir, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)


def greedy(cls, out_dir, prompt_ids, eot):
    model = cls.from_pretrained(out_dir, torch_dtype=torch.float64)
    model.eval()
    seq = list(prompt_ids)
    new = []
    with torch.no_grad():
        for _ in range(NEW):
            last = model(input_ids=torch.tensor([seq])).logits[0, -1]
            top2 = torch.topk(last, 2).values
            assert float(top2[0] - top2[1]) > MIN_MARGIN, (out_dir, len(new), top2)
            nxt = int(torch.argmax(last))
            if nxt == eot:
                break
            new.append(nxt)
            seq.append(nxt)
        ref = model.generate(torch.tensor([prompt_ids]), max_new_tokens=NEW, do_sample=False,
                             eos_token_id=eot, pad_token_id=eot)[0, len(prompt_ids):].tolist()
    if ref and ref[-1] == eot:
        ref = ref[:-1]
    assert ref == new, (ref, new)
    return new


def build(out):
    lines = []
    # GPT-2 with the byte-level BPE tokenizer.
    bpe = Tokenizer.from_file(os.path.join(FIXTURES, "tokenizer", "gpt2.tokenizer.json"))
    vocab = bpe.get_vocab_size(with_added_tokens=True)
    eot = bpe.token_to_id("<|endoftext|>")
    torch.manual_seed(GPT2_SEED)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2,
                                       n_head=4, activation_function="gelu_new", resid_pdrop=0.0,
                                       embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                                       bos_token_id=eot, eos_token_id=eot))
    randomize(model, torch.Generator().manual_seed(GPT2_SEED), emb_scale=0.1, matrix_scale=0.3)
    d = os.path.join(out, "gpt2_tok")
    shutil.rmtree(d, ignore_errors=True)
    save(model, d)
    prompt = "Héllo 你好, the world 👍"
    ids = bpe.encode(prompt, add_special_tokens=False).ids
    new = greedy(GPT2LMHeadModel, d, ids, eot)
    text = bpe.decode(new, skip_special_tokens=False)
    lines.append(("gpt2_bpe", "hf/gpt2_tok", "tokenizer/gpt2.tokenizer.json", prompt, ids, new,
                  text))

    # LLaMA with the SentencePiece model.
    sp = spm.SentencePieceProcessor(model_file=os.path.join(FIXTURES, "tokenizer", "sp.model"))
    torch.manual_seed(SEED + 1)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=sp.vocab_size(), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id()))
    randomize(model, torch.Generator().manual_seed(SEED + 1))
    d = os.path.join(out, "llama_sp")
    shutil.rmtree(d, ignore_errors=True)
    save(model, d)
    prompt = "The year 2026: naïve café 你好"
    ids = [sp.bos_id()] + sp.encode(prompt)
    new = greedy(LlamaForCausalLM, d, ids, sp.eos_id())
    before = sp.decode(ids[1:])
    after = sp.decode(ids[1:] + new)
    assert after.startswith(before), (before, after)
    lines.append(("llama_sp", "hf/llama_sp", "tokenizer/sp.model", prompt, ids, new,
                  after[len(before):]))

    with open(os.path.join(out, "generate_tok.tsv"), "w") as f:
        for name, model_dir, tok, prompt, ids, new, text in lines:
            f.write("\t".join([name, model_dir, tok, prompt.encode().hex(),
                               " ".join(map(str, ids)), " ".join(map(str, new)),
                               text.encode().hex()]) + "\n")
            print("%s: %d prompt ids -> %d new ids: %r" % (name, len(ids), len(new), text))
    return ["gpt2_tok", "llama_sp", "generate_tok.tsv"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(FIXTURES, "hf"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.check:
        names = build(args.out)
        print("written: %s (torch %s, transformers %s)" %
              (", ".join(names), torch.__version__, transformers.__version__))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        names = build(tmp)
        changed = []
        for n in names:
            a, b = os.path.join(tmp, n), os.path.join(args.out, n)
            if os.path.isdir(a):
                cmp = filecmp.dircmp(a, b)
                changed += [os.path.join(n, f) for f in cmp.diff_files + cmp.left_only +
                            cmp.right_only]
            elif not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
                changed.append(n)
        print("would change: %s" % (", ".join(changed) or "none"))
        return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
