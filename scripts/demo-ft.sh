#!/usr/bin/env bash
# `just demo-ft` (and the last act of `just demo`): fine-tuning end to end. A broker (simulated TEE, the built-in
# n-gram model family) as a real process; a customer who uploads the dataset the repo ships, creates a task,
# follows its log live, checks the sealed model against the chain and the TEE signature before acknowledging
# it, waits for the settlement that pays the provider and reveals the key, decrypts the model, and compares
# its answer with the base model's. Exits non-zero as soon as any step fails, including when the fee paid is
# not exactly tokens × epochs × price.
#
# Standalone it starts its own devnet; `ZG_DEMO_DEVNET=<devnet.json>` (what `zg devnet up --json` prints)
# reuses one, with accounts 3 (broker) and 4 (customer) so it does not disturb the inference act.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
fail() { echo "demo-ft: FAILED: $*" >&2; exit 1; }
started=$(date +%s)

step "building zg and zg-broker"
cargo build --locked --quiet -p zg-cli -p zg-broker
ZG="$PWD/target/debug/zg"
BROKER_BIN="$PWD/target/debug/zg-broker"

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

step "starting zg-broker $broker (SIMULATED TEE, built-in n-gram family, log paced for reading)"
port=$(free_port); grpc=$(free_port)
storage="$work/storage"   # the local store stands in for the storage network: customer and broker share it
ZG_BROKER_KEY="$broker_key" ZG_LOG=warn "$BROKER_BIN" run --tee simulated --data-dir "$work/broker-data" \
  --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$grpc" --public-url "http://127.0.0.1:$port" \
  --rpc-url "$ZG_RPC_URL" --storage-dir "$storage" --price-per-token 1000000000 \
  --poll-interval-ms 200 --epoch-pause-ms 700 > "$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/broker.log" >&2; fail "zg-broker exited"; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || fail "zg-broker did not come up"

step "the contract owner checks the broker's attestation, then acknowledges its TEE signer"
signer=$(curl -fsS "http://127.0.0.1:$port/v1/info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["teeSigner"])')
ZG_PRIVATE_KEY="$owner_key" "$ZG" fine-tuning verify --provider "$broker" --allow-simulated >/dev/null \
  || fail "the owner's attestation check failed"
ZG_PRIVATE_KEY="$owner_key" "$ZG" owner acknowledge-tee-signer --provider "$broker" --service fine-tuning --signer "$signer"

export ZG_PRIVATE_KEY="$customer_key" ZG_STORAGE_DIR="$storage" ZG_DATA_DIR="$work/client"
step "the customer: the fine-tuning service on chain; verify the broker's TEE (fresh nonce, signer = on-chain signer)"
"$ZG" fine-tuning list-providers
"$ZG" fine-tuning verify --provider "$broker" --allow-simulated | head -4

step "customer $customer funds a fine-tuning sub-account with 3 0G"
"$ZG" add-account --amount 5 >/dev/null
"$ZG" transfer-fund --provider "$broker" --service fine-tuning --amount 3 >/dev/null
sub_before=$("$ZG" get-sub-account --provider "$broker" --service fine-tuning --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["neuron"])')

step "the dataset the repo ships (examples/finetune): tokens counted offline, the fee quoted by the provider"
dataset=examples/finetune/dataset.jsonl
config=examples/finetune/config.json
"$ZG" fine-tuning calculate-token --model zg-demo-ngram --dataset-path "$dataset" --config-path "$config" --provider "$broker"
root=$("$ZG" fine-tuning upload --data-path "$dataset" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')
echo "uploaded to storage: root $root" >&2

step "create the task and follow its log live (gRPC WatchTask) until the sealed model is on chain"
"$ZG" fine-tuning create-task --provider "$broker" --model zg-demo-ngram --dataset "$root" \
  --config-path "$config" --follow --json > "$work/task.json"
task=$(json "$work/task.json" 'd["id"]')
[ "$(json "$work/task.json" 'd["state"]')" = "Delivered" ] || fail "task $task is $(json "$work/task.json" 'd["state"]')"

step "download the sealed model, check it against the chain and the TEE signature, acknowledge it"
"$ZG" fine-tuning acknowledge-model --provider "$broker" --task-id "$task" --data-path "$work/model.sealed"

step "the broker settles: it is paid, and the key is revealed to the customer in the same transaction"
for _ in $(seq 1 150); do
  "$ZG" fine-tuning get-task --provider "$broker" --task "$task" --json > "$work/task.json"
  [ "$(json "$work/task.json" 'd["state"]')" = "Finished" ] && break
  sleep 0.2
done
"$ZG" fine-tuning get-task --provider "$broker" --task "$task"
[ "$(json "$work/task.json" 'd["state"]')" = "Finished" ] || fail "task $task was not settled"

step "decrypt the model with the revealed key (tag signature checked first) and try it"
"$ZG" fine-tuning decrypt-model --provider "$broker" --task-id "$task" \
  --encrypted-model "$work/model.sealed" --output "$work/model.tar"
"$ZG" fine-tuning generate --model "$work/model.tar" --prompt "How long do I bake a sourdough loaf?" --max-tokens 24

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

echo >&2
echo "demo-ft: every step verified ($(( $(date +%s) - started )) s)" >&2
