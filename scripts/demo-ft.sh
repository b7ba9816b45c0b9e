#!/usr/bin/env bash
# `just demo-ft` (and the last act of `just demo`): fine-tuning end to end with a real model. A broker (simulated
# TEE, real LoRA on SmolLM2-135M-Instruct on the CPU) as a real process; a customer who uploads the dataset the repo
# ships, creates a task, follows its log live (step, loss, held-out loss), checks the sealed adapter against the chain
# and the TEE signature before acknowledging it, waits for the settlement that pays the broker and reveals the key,
# decrypts the adapter; then asks the broker to deploy it to an inference provider (zg.v1.Adapters over gRPC, each
# TEE verifying the other's attestation and on-chain signer) and chats with the base model and with the fine-tuned
# one on the same prompt. Exits non-zero as soon as any step fails, including when the fee paid is not exactly
# tokens × epochs × price, when the adapter is served to someone else than its owner, or when the fine-tuned
# answer equals the base model's.
#
# Standalone it starts its own devnet and inference provider; `ZG_DEMO_DEVNET=<devnet.json>` (what `zg devnet up
# --json` prints) reuses a devnet, with accounts 3 (broker) and 4 (customer) so it does not disturb the inference
# act, and `ZG_DEMO_PROVIDER=<address>` reuses that act's provider (account 2, started with adapters allowed).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
fail() { echo "demo-ft: FAILED: $*" >&2; exit 1; }
started=$(date +%s)

step "building zg, zg-broker and zg-provider"
cargo build --locked --quiet -p zg-cli -p zg-broker -p zg-provider
ZG="$PWD/target/debug/zg"
BROKER_BIN="$PWD/target/debug/zg-broker"
PROVIDER_BIN="$PWD/target/debug/zg-provider"
MODEL_PATH="$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL_PATH" ] || fail "no SmolLM2 GGUF at $MODEL_PATH: run scripts/setup.sh (just setup)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${ZG_DEMO_KEEP:-}" ] && trap - EXIT
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url pid log what
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "$4 exited"; }
    sleep 0.2
  done
  fail "$4 did not come up"
}

devnet="${ZG_DEMO_DEVNET:-}"
if [ -z "$devnet" ]; then
  step "starting the devnet (anvil + LedgerManager, InferenceServing, FineTuningServing)"
  devnet="$work/devnet.json"
  "$ZG" devnet up --port 0 --json > "$devnet" 2> "$work/devnet.log" &
  pids+=($!)
  for _ in $(seq 1 150); do
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$devnet" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/devnet.log" >&2; fail "the devnet exited"; }
    sleep 0.2
  done
fi
export ZG_RPC_URL; ZG_RPC_URL=$(json "$devnet" 'd["rpc_url"]')
# The attestation policy names the simulated TD's measurements: an empty allow-list accepts nothing.
export ZG_ATTESTATION_POLICY="${ZG_ATTESTATION_POLICY:-$PWD/deploy/policy.simulated.toml}"
owner_key=$(json "$devnet" 'd["accounts"][0]["private_key"]')
broker_key=$(json "$devnet" 'd["accounts"][3]["private_key"]')
broker=$(json "$devnet" 'd["accounts"][3]["address"]')
customer_key=$(json "$devnet" 'd["accounts"][4]["private_key"]')
customer=$(json "$devnet" 'd["accounts"][4]["address"]')
stranger_key=$(json "$devnet" 'd["accounts"][5]["private_key"]')

provider="${ZG_DEMO_PROVIDER:-}"
if [ -z "$provider" ]; then
  provider_key=$(json "$devnet" 'd["accounts"][2]["private_key"]')
  provider=$(json "$devnet" 'd["accounts"][2]["address"]')
  step "starting zg-provider $provider (SIMULATED TEE, built-in SmolLM2, accepts adapters from attested brokers)"
  port=$(free_port); gport=$(free_port)
  "$PROVIDER_BIN" init "$work/provider.toml" 2>/dev/null
  ZG_PROVIDER_KEY="$provider_key" ZG_LOG=warn "$PROVIDER_BIN" run -c "$work/provider.toml" --tee simulated \
    --data-dir "$work/provider-data" --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$gport" \
    --public-url "http://127.0.0.1:$port" --grpc-public-url "http://127.0.0.1:$gport" --rpc-url "$ZG_RPC_URL" \
    --upstream builtin --model smollm2-135m-instruct \
    --adapters-policy "$PWD/deploy/policy.simulated.toml" --adapters-dangerous-allow-simulated > "$work/provider.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz" "${pids[-1]}" "$work/provider.log" zg-provider
  psigner=$("$ZG" inference list-providers --json \
    | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["provider"].lower() == sys.argv[1].lower()][0]["tee_signer"])' "$provider")
  ZG_PRIVATE_KEY="$owner_key" ZG_DATA_DIR="$work/owner" "$ZG" inference verify --provider "$provider" --allow-simulated >/dev/null \
    || fail "the owner's attestation check of the provider failed"
  ZG_PRIVATE_KEY="$owner_key" "$ZG" owner acknowledge-tee-signer --provider "$provider" --service inference --signer "$psigner"
fi

step "starting zg-broker $broker (SIMULATED TEE, real LoRA on SmolLM2-135M-Instruct, CPU)"
port=$(free_port); grpc=$(free_port)
storage="$work/storage"   # the local store stands in for the storage network: customer and broker share it
cat > "$work/broker.toml" <<TOML
[[models]]
name = "smollm2-135m-instruct"
executor = "lora"
model_path = "$MODEL_PATH"
TOML
ZG_BROKER_KEY="$broker_key" ZG_LOG=warn "$BROKER_BIN" run -c "$work/broker.toml" --tee simulated \
  --data-dir "$work/broker-data" --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$grpc" \
  --public-url "http://127.0.0.1:$port" --rpc-url "$ZG_RPC_URL" --storage-dir "$storage" \
  --price-per-token 1000000000 --poll-interval-ms 200 \
  --adapters-policy "$PWD/deploy/policy.simulated.toml" --adapters-dangerous-allow-simulated > "$work/broker.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/healthz" "${pids[-1]}" "$work/broker.log" zg-broker

step "the contract owner checks the broker's attestation, then acknowledges its TEE signer"
signer=$(curl -fsS "http://127.0.0.1:$port/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["teeSigner"])')
ZG_PRIVATE_KEY="$owner_key" "$ZG" fine-tuning verify --provider "$broker" --allow-simulated >/dev/null \
  || fail "the owner's attestation check failed"
ZG_PRIVATE_KEY="$owner_key" "$ZG" owner acknowledge-tee-signer --provider "$broker" --service fine-tuning --signer "$signer"

export ZG_PRIVATE_KEY="$customer_key" ZG_STORAGE_DIR="$storage" ZG_DATA_DIR="$work/client" ZG_ALLOW_SIMULATED=1
step "the customer: the fine-tuning service on chain; verify the broker's TEE (fresh nonce, signer = on-chain signer)"
"$ZG" fine-tuning list-providers
"$ZG" fine-tuning verify --provider "$broker" | head -4

step "customer $customer funds a fine-tuning sub-account with 3 0G"
"$ZG" add-account --amount 6 >/dev/null
"$ZG" transfer-fund --provider "$broker" --service fine-tuning --amount 3 >/dev/null
sub_before=$("$ZG" get-sub-account --provider "$broker" --service fine-tuning --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["neuron"])')

step "the dataset the repo ships (examples/finetune: a sourdough teacher's terse answers), counted with SmolLM2's own tokenizer"
dataset=examples/finetune/dataset.jsonl
config=examples/finetune/config.lora.json
"$ZG" fine-tuning calculate-token --model smollm2-135m-instruct --model-path "$MODEL_PATH" \
  --dataset-path "$dataset" --config-path "$config" --provider "$broker"
root=$("$ZG" fine-tuning upload --data-path "$dataset" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')
echo "uploaded to storage: root $root" >&2

step "create the LoRA task and follow its log live (gRPC WatchTask: step, loss, held-out loss) until the sealed adapter is on chain"
"$ZG" fine-tuning create-task --provider "$broker" --model smollm2-135m-instruct --dataset "$root" \
  --config-path "$config" --follow --json > "$work/task.json"
task=$(json "$work/task.json" 'd["id"]')
[ "$(json "$work/task.json" 'd["state"]')" = "Delivered" ] || fail "task $task is $(json "$work/task.json" 'd["state"]')"

step "download the sealed adapter, check it against the chain and the TEE signature, acknowledge it"
"$ZG" fine-tuning acknowledge-model --provider "$broker" --task-id "$task" --data-path "$work/model.sealed"

step "the broker settles: it is paid, and the key is revealed to the customer in the same transaction"
for _ in $(seq 1 150); do
  "$ZG" fine-tuning get-task --provider "$broker" --task "$task" --json > "$work/task.json"
  [ "$(json "$work/task.json" 'd["state"]')" = "Finished" ] && break
  sleep 0.2
done
"$ZG" fine-tuning get-task --provider "$broker" --task "$task"
[ "$(json "$work/task.json" 'd["state"]')" = "Finished" ] || fail "task $task was not settled"

step "decrypt the adapter with the revealed key (tag signature checked first): a PEFT adapter, yours to keep; try it locally"
"$ZG" fine-tuning decrypt-model --provider "$broker" --task-id "$task" \
  --encrypted-model "$work/model.sealed" --output "$work/model.tar"
tar -tvf "$work/model.tar" >&2
"$ZG" fine-tuning generate --model "$work/model.tar" --model-path "$MODEL_PATH" --max-tokens 32 \
  --system "You are a patient sourdough baking teacher." --prompt "How do I feed my sourdough starter?"

step "the fee paid on chain is exactly tokens × epochs × price"
sub_after=$("$ZG" get-sub-account --provider "$broker" --service fine-tuning --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["neuron"])')
python3 - "$work/task.json" "$sub_before" "$sub_after" <<'PYEOF'
import json, sys
t, before, after = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
tokens, epochs, price = t["tokens"], t["epochs"], int(t["price_per_token"])
fee = tokens * epochs * price
paid = before - after
print(f"tokens {tokens} × epochs {epochs} × price {price} neuron = {fee} neuron")
print(f"sub-account before {before}, after {after}: paid {paid} neuron (task says charged {t['charged']})")
ok = paid == fee == int(t["fee"]) == int(t["charged"])
print("OK: paid == tokens × epochs × price" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
PYEOF

step "deploy the adapter to inference provider $provider: the broker and the provider verify each other's TEE over gRPC"
"$ZG" fine-tuning deploy-adapter --provider "$provider" --broker "$broker" --task-id "$task" || fail "the deployment failed"
adapter=$("$ZG" fine-tuning get-adapter-name --model smollm2-135m-instruct --task-id "$task")
"$ZG" inference list-adapters --provider "$provider"

step "the same question to the base model and to the fine-tuned one (greedy, verified receipts, billed at the provider's prices)"
system="You are a patient sourdough baking teacher."
question="How long do I bake a sourdough loaf?"
export ZG_PROVIDER="$provider"
"$ZG" inference acknowledge-provider >/dev/null
"$ZG" inference chat --temperature 0 --max-tokens 48 --system "$system" "$question" > "$work/base.txt"
"$ZG" fine-tuning chat --provider "$provider" --task-id "$task" --temperature 0 --max-tokens 48 --system "$system" "$question" > "$work/ft.txt"
printf '\033[1mbase SmolLM2:\033[0m %s\n' "$(cat "$work/base.txt")" >&2
printf '\033[1mfine-tuned  :\033[0m %s\n' "$(cat "$work/ft.txt")" >&2
cmp -s "$work/base.txt" "$work/ft.txt" && fail "the fine-tuned model answered exactly as the base model"
echo "the adapter answers in the dataset's terse, imperative teacher style; the base model rambles" >&2

step "another customer asks for the adapter by name: refused by the provider, before the model, not billed (expected to fail)"
export ZG_PRIVATE_KEY="$stranger_key" ZG_DATA_DIR="$work/stranger"
"$ZG" add-account --amount 3 >/dev/null
if "$ZG" inference chat --model "$adapter" --temperature 0 --max-tokens 16 "$question" 2> "$work/stranger.txt"; then
  fail "adapter $adapter was served to someone else than its owner"
fi
# Refused as if the adapter did not exist (its name is derived from a public task id: a different answer would tell
# anyone which provider serves whose adapter).
grep -q "model_not_found" "$work/stranger.txt" || { cat "$work/stranger.txt" >&2; fail "the refusal does not say model_not_found"; }
grep -m1 "model_not_found" "$work/stranger.txt" >&2

echo >&2
echo "demo-ft: every step verified ($(( $(date +%s) - started )) s)" >&2
