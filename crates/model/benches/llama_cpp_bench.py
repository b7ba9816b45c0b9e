#!/usr/bin/env python3
"""llama.cpp side of zg-model's decode bench: same GGUF, thread count, prompt and protocol (see decode.rs).

Usage: llama_cpp_bench.py MODEL.gguf THREADS TOKENS PROMPT   → one JSON document on stdout.
4 streams = 4 Llama instances on 4 Python threads (ctypes releases the GIL during llama_decode), each with
max(1, THREADS // 2) threads; the figure to compare is the aggregate tokens/s. RSS is read after the 1-stream run
(the 4 extra instances would count the mapped model 4 more times).
"""
import json
import statistics
import sys
import threading
import time

import jinja2
import llama_cpp
import numpy as np

path, threads, tokens, prompt_text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def make(n_threads):
    return llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=n_threads, n_threads_batch=n_threads,
                           n_batch=512, verbose=False)


llm = make(threads)
meta = llm.metadata
tmpl = jinja2.Environment().from_string(meta["tokenizer.chat_template"])
prompt = tmpl.render(messages=[{"role": "user", "content": prompt_text}], add_generation_prompt=True)
ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)


def last_logits(m):
    """Logits of the last evaluated token (with logits_all=False llama-cpp-python keeps no copy in `scores`)."""
    return np.ctypeslib.as_array(m._ctx.get_logits(), shape=(m.n_vocab(),)).astype(np.float32)


def run(m, n):
    """Greedy, end-of-turn ignored; returns (ttft_s, decode_s, tokens)."""
    m.reset()
    t0 = time.perf_counter()
    m.eval(ids)
    nxt = int(np.argmax(last_logits(m)))
    ttft = time.perf_counter() - t0
    t1 = time.perf_counter()
    for _ in range(n - 1):
        m.eval([nxt])
        nxt = int(np.argmax(last_logits(m)))
    return ttft, time.perf_counter() - t1, n


run(llm, 4)
ttft = statistics.median(run(llm, 1)[0] for _ in range(5))
# Decode of one stream: median of 3 runs (the machine is shared; one run moves with the load).
decode_1 = statistics.median((n - 1) / dt for _, dt, n in (run(llm, tokens) for _ in range(3)))
status = open("/proc/self/status").read().splitlines()
kb = lambda k: float(next(l for l in status if l.startswith(k)).split()[1])
rss, hwm = kb("VmRSS:") / 1024, kb("VmHWM:") / 1024

per = max(1, threads // 2)
inst = [make(per) for _ in range(4)]
for m in inst:
    run(m, 2)
res = [None] * 4
def work(i):
    res[i] = run(inst[i], tokens)
ths = [threading.Thread(target=work, args=(i,)) for i in range(4)]
t0 = time.perf_counter()
for t in ths:
    t.start()
for t in ths:
    t.join()
wall = time.perf_counter() - t0
first = max(r[0] for r in res)
decode_4 = sum(r[2] - 1 for r in res) / (wall - first)

json.dump({"prompt_tokens": len(ids), "decode_1": decode_1, "decode_4": decode_4, "ttft_ms": ttft * 1000,
           "rss_mb": rss, "hwm_mb": hwm, "threads": threads,
           "threads_per_stream_4": per, "llama_cpp_python": llama_cpp.__version__}, sys.stdout)
