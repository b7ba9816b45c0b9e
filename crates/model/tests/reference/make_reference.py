#!/usr/bin/env python3
"""Makes reference.json for zg-model's tests, once, from the same GGUF the tests load.

Two independent references:
  * token ids from the Python `tokenizers` package (Hugging Face), with SmolLM2's published pipeline
    (byte-level BPE; pre-tokenizers Digits(individual_digits=True) then ByteLevel(add_prefix_space=False);
    special tokens = GGUF token_type 3) built from the GGUF's vocabulary and merges, and from llama.cpp's
    tokenizer (llama-cpp-python, `special=True`); the script fails unless both agree on every string;
  * greedy continuations from llama.cpp (llama-cpp-python) on the same GGUF: argmax over its logits, one token
    at a time, from a prompt rendered with the GGUF's chat template (jinja2, as llama-cpp-python does), with
    llama.cpp's top-5 logits at every step (the test compares logits along this path, teacher-forced, since two
    correct implementations may break a near-tie differently).

Run (versions used are written into the output):
  python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install llama-cpp-python tokenizers gguf numpy jinja2
  /tmp/refvenv/bin/python crates/model/tests/reference/make_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import hashlib
import json
import os
import sys

import gguf
import jinja2
import llama_cpp
import numpy as np
import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "In 2024, 3.14159 and 1,000,000 were numbers; so was 42.",
    "a  b   c\n\n\tx  \n  y",
    "héllo wörld — naïve café, 你好世界, Привет мир, 🚀🔥 emoji",
    "I'm sure they've said we'll go, don't you think? It's O'Neil's.",
    "fn main() {\n    println!(\"hi {}\", 1 + 2);\n}\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "trailing spaces   ",
    "   leading spaces",
    "Arabic digits ٣٤٥ and full-width １２３ and superscript ²³",
    "x" * 300 + " " + "ab" * 150,
    "URL: https://example.com/path?q=1&r=two#frag",
    "\n\n\n",
    "Tabs\tand\r\nCRLF line endings\r\n",
    "bytes without a token: \x04\x06 and \U00040000 dropped",
]

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Name three primary colors."},
    ],
]
GREEDY_TOKENS = 24


def last_logits(m):
    """Logits of the last evaluated token (with logits_all=False llama-cpp-python keeps no copy in `scores`)."""
    return np.ctypeslib.as_array(m._ctx.get_logits(), shape=(m.n_vocab(),)).astype(np.float32)


def field(reader, key):
    f = reader.fields[key]
    return [f.parts[i] for i in f.data]


def hf_tokenizer(reader):
    toks = [bytes(p).decode("utf-8") for p in field(reader, "tokenizer.ggml.tokens")]
    types = [int(p[0]) for p in field(reader, "tokenizer.ggml.token_type")]
    merges = [bytes(p).decode("utf-8") for p in field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in reversed(list(enumerate(toks)))}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False, byte_fallback=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(toks, types) if ty == 3])
    return tok


def main():
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "reference.json")
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    reader = gguf.GGUFReader(path)
    template = bytes(field(reader, "tokenizer.chat_template")[0]).decode("utf-8")
    hf = hf_tokenizer(reader)
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=2, n_batch=512, verbose=False, logits_all=False)

    tok_ref = []
    for text in TEXTS:
        a = hf.encode(text, add_special_tokens=False).ids
        b = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if a != b:
            sys.exit(f"tokenizers and llama.cpp disagree on {text!r}:\n{a}\n{b}")
        tok_ref.append({"text": text, "ids": a, "count": len(a)})

    env = jinja2.Environment()
    tmpl = env.from_string(template)
    greedy = []
    for msgs in CHATS:
        prompt = tmpl.render(messages=msgs, add_generation_prompt=True)
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        if ids != hf.encode(prompt, add_special_tokens=False).ids:
            sys.exit(f"prompt tokenization differs for {msgs!r}")
        llm.reset()
        llm.eval(ids)
        gen = []
        top = []
        for _ in range(GREEDY_TOKENS):
            logits = last_logits(llm)
            nxt = int(np.argmax(logits))
            best = np.argsort(-logits)[:5]
            top.append([[int(i), round(float(logits[i]), 4)] for i in best])
            gen.append(nxt)
            if nxt == llm.token_eos():
                break
            llm.eval([nxt])
        greedy.append(
            {
                "messages": msgs,
                "prompt": prompt,
                "prompt_ids": ids,
                "tokens": gen,
                "top5": top,
                "text": hf.decode(gen, skip_special_tokens=True),
            }
        )

    doc = {
        "gguf_sha256": sha,
        "made_with": {
            "tokenizers": tokenizers.__version__,
            "llama_cpp_python": llama_cpp.__version__,
            "gguf": getattr(gguf, "__version__", "?"),
            "threads": 2,
        },
        "tokenizer": tok_ref,
        "greedy": greedy,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(tok_ref)} strings, {len(greedy)} greedy continuations", file=sys.stderr)


if __name__ == "__main__":
    main()
