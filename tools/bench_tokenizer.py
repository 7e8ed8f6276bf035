#!/usr/bin/env python3
"""Tokenizer throughput: `loom data prepare` beside the Python `tokenizers` library, in one run,
on the same documents and the same tokenizer.json, with the same thread count; and a check that
both give the same ids.

The corpus is real text that every Debian machine has: the Python standard library's .py files
(code, comments, docstrings), up to --mb megabytes, one document per file. With --train-vocab N
a byte-level BPE with the LLaMA-3 pre-tokenizer and N ids is first trained on that corpus with
`tokenizers` (a realistic vocabulary; the fixtures' are tiny); otherwise --tokenizer is used.

loom's figure is its own "encoded ... in S s" (encoding on the threads given, without reading
files or writing shards), and the whole command's wall time beside it; the library's is Tokenizer.encode_batch (Rust, RAYON_NUM_THREADS = threads)
and a plain encode loop on one thread, timed around the calls only. Needs: pip install
tokenizers numpy.

Usage: tools/bench_tokenizer.py [--loom build/bin/loom] [--threads 2] [--mb 20]
                                [--tokenizer FILE | --train-vocab 32000]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def corpus(limit_bytes):
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"), recursive=True))
    docs, total = [], 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                b = fh.read()
            b.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        docs.append(b)
        total += len(b)
        if total >= limit_bytes:
            break
    return docs


def train(docs, vocab, path):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             special_tokens=["<|begin_of_text|>", "<|end_of_text|>"], show_progress=False)
    tok.train_from_iterator((d.decode("utf-8") for d in docs), tr)
    tok.save(path)


def read_shards(paths):
    out = []
    for p in paths:
        raw = np.fromfile(p, dtype=np.int32, count=256)
        dtype = np.uint16 if raw[0] == 20240520 else np.uint32
        out.append(np.fromfile(p, dtype=dtype, offset=1024).astype(np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loom", default=os.path.join(ROOT, "build", "bin", "loom"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer",
                                                        "llama3.tokenizer.json"))
    ap.add_argument("--train-vocab", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mb", type=float, default=20)
    args = ap.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    from tokenizers import Tokenizer

    docs = corpus(int(args.mb * 1e6))
    mb = sum(len(d) for d in docs) / 1e6
    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_") as tmp:
        tok_path = args.tokenizer
        if args.train_vocab:
            tok_path = os.path.join(tmp, "trained.tokenizer.json")
            t0 = time.time()
            train(docs, args.train_vocab, tok_path)
            print(f"trained a {args.train_vocab}-id LLaMA-3-style BPE in {time.time() - t0:.1f} s")
        indir = os.path.join(tmp, "in")
        os.makedirs(indir)
        names = []
        for i, d in enumerate(docs):
            names.append(os.path.join(indir, f"doc{i:06d}.py"))
            with open(names[-1], "wb") as f:
                f.write(d)
        t0 = time.perf_counter()
        out = subprocess.run([args.loom, "data", "prepare", "--input", indir, "--out",
                              os.path.join(tmp, "out"), "--tokenizer", tok_path, "--threads",
                              str(args.threads), "--val-fraction", "0"],
                             check=True, capture_output=True, text=True).stdout
        wall_s = time.perf_counter() - t0
        m = re.search(r"encoded ([0-9.e+]+) MB in ([0-9.e+-]+) s", out)
        loom_s = float(m.group(2))
        loom_ids = read_shards(sorted(glob.glob(os.path.join(tmp, "out", "train_*.bin"))))

        tok = Tokenizer.from_file(tok_path)
        texts = [d.decode("utf-8") for d in docs]
        t0 = time.perf_counter()
        batch = tok.encode_batch(texts, add_special_tokens=False)
        batch_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for t in texts:
            tok.encode(t, add_special_tokens=False)
        single_s = time.perf_counter() - t0

        vocab = tok.get_vocab()
        bos = vocab.get("<|begin_of_text|>")
        eot = next(vocab[n] for n in ("<|endoftext|>", "<|end_of_text|>") if n in vocab)
        ref = []
        for e in batch:
            if bos is not None:
                ref.append(bos)
            ref.extend(e.ids)
            ref.append(eot)
        same = len(ref) == len(loom_ids) and bool(np.array_equal(np.array(ref), loom_ids))

    print(f"corpus: {len(docs)} documents, {mb:.1f} MB (Python stdlib sources); "
          f"tokenizer {os.path.basename(tok_path)}, {len(ref)} tokens")
    print(f"{'':28s} {'MB/s':>8s} {'seconds':>8s}")
    print(f"{'loom data prepare, %d thr' % args.threads:28s} {mb / loom_s:8.2f} {loom_s:8.2f}")
    print(f"{'  whole command (wall)':28s} {mb / wall_s:8.2f} {wall_s:8.2f}")
    print(f"{'tokenizers batch, %d thr' % args.threads:28s} {mb / batch_s:8.2f} {batch_s:8.2f}")
    print(f"{'tokenizers encode, 1 thr':28s} {mb / single_s:8.2f} {single_s:8.2f}")
    print("ids equal:", "yes" if same else "NO")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
