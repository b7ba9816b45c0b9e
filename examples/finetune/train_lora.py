#!/usr/bin/env python3
"""A LoRA trainer for zg-broker's `command` (and `docker`) executor: Hugging Face transformers + PEFT.

This is what a GPU provider runs; it is not run in CI (it needs torch, transformers, peft and a base model).
It follows the executor contract of zg_finetune (crates/finetune/src/executor/command.rs):

- inputs from the environment: ZG_DATASET (validated JSONL, one record per line: chat `messages`,
  `instruction`/`input`/`output`, `prompt`/`completion` or `text`), ZG_PARAMS (the training parameters, every
  default filled in), ZG_BASE_MODEL_DIR (the base model files), ZG_OUTPUT_DIR (write the adapter here);
- progress on stdout: `ZG_METRIC {"epoch": 1, "name": "eval_loss", "value": 1.93}` and `ZG_PROGRESS 0.5`
  lines become metrics and progress; every other line is the task log the customer reads (never print dataset
  content: the log is readable by anyone who knows the customer's address on 0G-compatible brokers);
- exit 0 = success, and the content of ZG_OUTPUT_DIR is the model (packaged, sealed and delivered);
- SIGTERM on cancel or timeout: stop promptly (the broker sends SIGKILL after the grace period).

Broker config:

    [[models]]
    name = "Qwen2.5-0.5B-Instruct"
    executor = "command"
    tokenizer = "bytes"
    base_model_dir = "/models/Qwen2.5-0.5B-Instruct"
    command = ["python3", "examples/finetune/train_lora.py"]
"""
import json
import math
import os
import random
import signal
import sys


def metric(epoch, name, value, step=None):
    print("ZG_METRIC " + json.dumps({"epoch": epoch, "step": step, "name": name, "value": value}), flush=True)


def texts(record):
    if "messages" in record:
        return [m["content"] if isinstance(m["content"], str) else " ".join(p.get("text", "") for p in m["content"])
                for m in record["messages"]]
    if "instruction" in record:
        return [record["instruction"], record.get("input") or "", record["output"]]
    if "prompt" in record:
        return [record["prompt"], record["completion"]]
    return [record["text"]]


def main():
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))

    import torch  # noqa: E402  (imported late: a missing torch is reported as a failed task, not a crash)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = json.load(open(os.environ["ZG_PARAMS"]))
    extra = params.get("extra", {})
    base = os.environ["ZG_BASE_MODEL_DIR"]
    out = os.environ["ZG_OUTPUT_DIR"]
    records = [json.loads(l) for l in open(os.environ["ZG_DATASET"]) if l.strip()]
    random.Random(params["seed"]).shuffle(records)
    held = max(1, math.ceil(len(records) * params["validation_split"]))
    train, valid = records[held:], records[:held]
    print(f"LoRA on {os.path.basename(base)}: {len(train)} training records, {len(valid)} held out", flush=True)

    torch.manual_seed(params["seed"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.bfloat16 if device == "cuda" else None)
    model = get_peft_model(model, LoraConfig(
        r=extra.get("lora_r", extra.get("lora_rank", 8)), lora_alpha=extra.get("lora_alpha", 16),
        lora_dropout=extra.get("lora_dropout", 0.05), task_type="CAUSAL_LM"))
    model.to(device)
    max_len = extra.get("max_seq_length", extra.get("max_length", 512))

    def batch(recs):
        enc = tok(["\n".join(texts(r)) for r in recs], return_tensors="pt", padding=True, truncation=True,
                  max_length=max_len)
        enc = {k: v.to(device) for k, v in enc.items()}
        enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        return enc

    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def eval_loss():
        model.eval()
        with torch.no_grad():
            losses = [model(**batch([r])).loss.item() for r in valid]
        model.train()
        return sum(losses) / len(losses)

    opt = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"])
    bs = params["per_device_train_batch_size"]
    epochs = params["num_train_epochs"]
    loss0 = eval_loss()
    metric(0, "eval_loss", loss0)
    steps = 0
    for epoch in range(1, epochs + 1):
        for i in range(0, len(train), bs):
            if stop["now"]:
                print("SIGTERM: stopping", flush=True)
                sys.exit(143)
            loss = model(**batch(train[i:i + bs])).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            steps += 1
            if params.get("max_steps") and steps >= params["max_steps"]:
                break
        loss = eval_loss()
        metric(epoch, "eval_loss", loss)
        print(f"epoch {epoch}: held-out loss {loss:.4f}", flush=True)
        print(f"ZG_PROGRESS {epoch / epochs}", flush=True)
    model.save_pretrained(out)
    print(f"held-out loss {loss0:.4f} -> {loss:.4f}; adapter saved", flush=True)


if __name__ == "__main__":
    main()
