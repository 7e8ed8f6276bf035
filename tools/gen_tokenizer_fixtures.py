#!/usr/bin/env python3
"""Writes the tokenizer fixtures loom's tests compare against into tests/fixtures/tokenizer/.

Three tiny tokenizers are trained with the reference libraries from PyPI, on this repository's
README and docs plus the multilingual lines in SAMPLES (so their merges cover CJK, emoji, ...):

  gpt2.tokenizer.json    `tokenizers` byte-level BPE with the GPT-2 pre-tokenizer (ByteLevel with
                         its built-in regex), added tokens with lstrip, rstrip and normalized set,
                         and <|endoftext|> added last as in GPT-2. gpt2_prefix.expected.tsv:
                         its ids with the pre-tokenizer's add_prefix_space set.
  llama3.tokenizer.json  `tokenizers` byte-level BPE with the LLaMA-3 pre-tokenizer (a Split on
                         LLaMA-3's regex, then ByteLevel without regex), ignore_merges as in
                         LLaMA-3, and LLaMA-3's special tokens at LLaMA-3's ids: <|begin_of_text|>
                         128000, <|end_of_text|> 128001, ... up to 128255 (vocabulary 128256, so
                         shards need 32-bit ids), and LLaMA-3's post-processor (BOS prepended,
                         which encode(add_special_tokens=False) leaves out).
  sp.model               `sentencepiece` BPE trained as LLaMA-2's was: byte_fallback, split_digits,
                         identity normalization, dummy prefix, unk/bos/eos = 0/1/2.

For each, NAME.expected.tsv holds one line per text of TEXTS (and of the tokenizer's extra texts):
the UTF-8 text in hex, a tab, then the reference library's ids for it separated by spaces:
`tokenizers`' encode(text, add_special_tokens=False).ids, sentencepiece's EncodeAsIds(text).
The C++ tests read those files, so ctest needs no Python.

Usage: tools/gen_tokenizer_fixtures.py [--out tests/fixtures/tokenizer]
Needs: pip install tokenizers sentencepiece.
"""
import argparse
import glob
import io
import json
import os

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Lines added to the training text so that merges exist beyond English.
SAMPLES = [
    "你好，世界！今天天气很好。我们一起去公园散步吧。",
    "日本語のテキストです。ひらがなとカタカナと漢字。",
    "한국어 텍스트입니다. 안녕하세요 여러분.",
    "Καλημέρα κόσμε, τι κάνεις σήμερα;",
    "Привет, мир! Как дела сегодня?",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "👍👍 😀😀😀 🎉 emoji everywhere 🚀🚀",
    "naïve café résumé — “quoted” … déjà vu",
    "I'm sure you'll see it's what they've done, and we'd say I'D known.",
    "The year 2026 has 365 days; 3.14159 and 1,234,567.",
]

# The texts whose ids are checked: Unicode, CJK, emoji, digits, whitespace runs, contractions,
# newlines, control characters, categories the pre-tokenizer regexes distinguish.
TEXTS = [
    "",
    "Hello, world!",
    "hello world",
    " leading space",
    "trailing space ",
    "   three leading",
    "a  b   c    d",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\n",
    "windows\r\nline\r\n\r\nends",
    "spaces before newline   \n  and after",
    "\n\n\n",
    "   ",
    " \t \n \t ",
    "I'm sure you'll see it's what they've done, and we'd say I'D known.",
    "DON'T SHOUT, HE'S HERE 'RE 'VE 'LL 'M 'D 'T 'S",
    "'s 't 're 've 'm 'll 'd '",
    "it'ſ the long s ('ſ) and the Kelvin sign K",
    "digits 0123456789 and 1234567 and 12 345",
    "pi is 3.14159, e is 2.71828; 1,000,000 dollars",
    "dates 2026-12-06T10:44:51Z",
    "other numbers ٣٤٥ ²³ Ⅻ ½ ①②",
    "你好，世界！今天天气很好。",
    "日本語のテキストです。",
    "한국어 텍스트입니다.",
    "mixed 中文 and English 混合 text",
    "👍 😀😀 🎉🚀",
    "👍🏽 👨‍👩‍👧 🇩🇪 ❤️",
    "naïve café résumé — “quoted” … déjà vu",
    "Καλημέρα κόσμε",
    "Привет, мир!",
    "नमस्ते दुनिया",
    "مرحبا بالعالم",
    "ภาษาไทย",
    "nbsp\u00a0here, ideographic\u3000space, line\u2028separator, en\u2002space",
    "control \x01\x02\x1f chars\x7f and \x0b\x0c",
    "def f(x):\n    return x**2  # square\n\n\nclass A:\n\tpass\n",
    "punctuation!!! ??? ... --- *** (([[{{}}]])) <<>> @#$%^&",
    "a.b,c;d:e!f?g",
    "email me at someone@example.com or https://example.org/path?q=1&r=2",
    "CamelCaseWords and snake_case_words and kebab-case-words",
    "ǅungla ǈ Ǌ ʰʲ ˢ",  # title-case (Lt) and modifier (Lm) letters
    "combining e\u0301 a\u0308 marks\u0300",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "x" * 40 + " " + "ab" * 20,
]

GPT2_EXTRA = [
    "end<|endoftext|>start",
    "a <mask> b   <mask>c<mask>",
    "x [SEP]   y[SEP]\n\nz [SEP]",
    "say hello world twice: hello worldly hello  world",
    "<mask>hello world[SEP]<|endoftext|>",
    "<|endoftext|><|endoftext|> two",
    "<|endoftext|",
]
LLAMA3_EXTRA = [
    "<|begin_of_text|>Hello<|end_of_text|>",
    "a<|reserved_special_token_250|>b <|end_of_text|>",
    "<|end_of_text",
]
SP_EXTRA = [
    "<s> and </s> stay text",
    "unknown chars ☃ ☄ ꙮ 𝔘𝔫𝔦",
]


def corpus():
    lines = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().splitlines(keepends=True))
    return lines + [s + "\n" for s in SAMPLES] * 20


def write_expected(path, texts, encode):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            ids = encode(t)
            f.write(t.encode("utf-8").hex() + "\t" + " ".join(str(i) for i in ids) + "\n")


def gpt2(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    # Added tokens with the matching options the library has: lstrip / rstrip eat the
    # whitespace beside them, and a non-special (normalized) token is matched after the others.
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False),
                            AddedToken("[SEP]", rstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("hello world", normalized=True)])
    tok.add_special_tokens(["<|endoftext|>"])  # last id, as in GPT-2 (50256)
    tok.save(os.path.join(out, "gpt2.tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out, "gpt2.tokenizer.json"))
    write_expected(os.path.join(out, "gpt2.expected.tsv"), TEXTS + GPT2_EXTRA,
                   lambda t: tok.encode(t, add_special_tokens=False).ids)
    # The same tokenizer with ByteLevel's add_prefix_space (a space before each piece of text
    # that lacks one); the test makes this variant by editing the file the same way.
    spec = json.loads(tok.to_str())
    spec["pre_tokenizer"]["add_prefix_space"] = True
    prefixed = Tokenizer.from_str(json.dumps(spec))
    write_expected(os.path.join(out, "gpt2_prefix.expected.tsv"), TEXTS + GPT2_EXTRA,
                   lambda t: prefixed.encode(t, add_special_tokens=False).ids)


def llama3(out):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    spec = json.loads(tok.to_str())
    # LLaMA-3's special tokens at LLaMA-3's ids, above the BPE vocabulary: the model's vocab
    # holds them too, so `tokenizers` keeps their ids when it loads the file.
    specials = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eot_id|>": 128009,
                "<|reserved_special_token_250|>": 128255}
    spec["added_tokens"] = [{"id": i, "content": c, "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}
                            for c, i in specials.items()]
    spec["model"]["vocab"].update(specials)
    spec["post_processor"] = json.loads(processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", 128000)]).__getstate__())
    path = os.path.join(out, "llama3.tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    tok = Tokenizer.from_file(path)
    write_expected(os.path.join(out, "llama3.expected.tsv"), TEXTS + LLAMA3_EXTRA,
                   lambda t: tok.encode(t, add_special_tokens=False).ids)


def sentencepiece(out):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=model, model_type="bpe", vocab_size=800,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    path = os.path.join(out, "sp.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=path)
    write_expected(os.path.join(out, "sp.expected.tsv"), TEXTS + SP_EXTRA, sp.encode_as_ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gpt2(args.out)
    llama3(args.out)
    sentencepiece(args.out)
    print("wrote", sorted(os.listdir(args.out)))


if __name__ == "__main__":
    main()
