#!/usr/bin/env bash
# `just demo`: one machine, end to end. A devnet; a provider (simulated TEE, built-in model) as a real process;
# a customer who funds a ledger, verifies the provider, chats through the native path and through `zg serve`
# with the official `openai` Python client; every receipt verified; settlement; balances before and after,
# with the provider's earnings equal to the sum of the receipts. As in 0G's onboarding, the contract owner (the
# devnet deployer, account 0) acknowledges the provider's TEE signer and the customer acknowledges it too.
# Exits non-zero as soon as any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }
started=$(date +%s)

step "building zg and zg-provider"
cargo build --locked --quiet -p zg-cli -p zg-provider -p zg-broker
ZG="$PWD/target/debug/zg"
PROVIDER_BIN="$PWD/target/debug/zg-provider"
PY="$PWD/.tools/venv/bin/python"
[ -x "$PY" ] || fail "no Python venv with the openai package: run scripts/setup.sh (just setup)"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
wait_json() { # file pid log
  for _ in $(seq 1 150); do
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "$3: process exited"; }
    sleep 0.2
  done
  cat "$3" >&2; fail "timed out waiting for $1"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "starting the devnet (anvil + LedgerManager, InferenceServing, FineTuningServing)"
"$ZG" devnet up --port 0 --json > "$work/devnet.json" 2> "$work/devnet.log" &
pids+=($!)
wait_json "$work/devnet.json" "${pids[-1]}" "$work/devnet.log"
export ZG_RPC_URL; ZG_RPC_URL=$(json "$work/devnet.json" 'd["rpc_url"]')
customer_key=$(json "$work/devnet.json" 'd["accounts"][1]["private_key"]')
customer=$(json "$work/devnet.json" 'd["accounts"][1]["address"]')
provider_key=$(json "$work/devnet.json" 'd["accounts"][2]["private_key"]')
provider=$(json "$work/devnet.json" 'd["accounts"][2]["address"]')
owner_key=$(json "$work/devnet.json" 'd["accounts"][0]["private_key"]')
owner=$(json "$work/devnet.json" 'd["accounts"][0]["address"]')
echo "rpc $ZG_RPC_URL  owner $owner  customer $customer  provider $provider" >&2

step "starting zg-provider $provider (SIMULATED TEE, built-in SmolLM2-135M-Instruct on the CPU, settlement every 2 s, adapters from attested brokers)"
port=$(free_port)
gport=$(free_port)
"$PROVIDER_BIN" init "$work/provider.toml" 2>/dev/null
# Settle any customer who owes at least 1 neuron, every 2 s (the shipped defaults are 0.001 0G / 60 s).
sed -i -e 's/^threshold = .*/threshold = "1"/' -e 's/^interval_secs = .*/interval_secs = 2/' "$work/provider.toml"
ZG_PROVIDER_KEY="$provider_key" ZG_LOG=warn "$PROVIDER_BIN" run -c "$work/provider.toml" --tee simulated \
  --data-dir "$work/provider-data" --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$gport" \
  --public-url "http://127.0.0.1:$port" --grpc-public-url "http://127.0.0.1:$gport" --rpc-url "$ZG_RPC_URL" \
  --upstream builtin --model smollm2-135m-instruct \
  --adapters-policy "$PWD/deploy/policy.simulated.toml" --adapters-dangerous-allow-simulated > "$work/provider.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/provider.log" >&2; fail "zg-provider exited"; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || fail "zg-provider did not come up"

# The customer's key and client state for every command below (the key never appears on a command line).
export ZG_PRIVATE_KEY="$customer_key" ZG_DATA_DIR="$work/client" ZG_PROVIDER="$provider"
# The attestation policy names the simulated TD's measurements: an empty allow-list accepts nothing.
export ZG_ATTESTATION_POLICY="$PWD/deploy/policy.simulated.toml"

step "the provider's service on chain"
"$ZG" inference list-providers

step "the provider's log: its TEE signer waits for the contract owner's acknowledgement"
for _ in $(seq 1 50); do grep -q "waits for the contract owner" "$work/provider.log" && break; sleep 0.2; done
grep -m1 "waits for the contract owner" "$work/provider.log" >&2 \
  || fail "zg-provider does not say that its TEE signer waits for the owner"

step "the contract owner (the devnet deployer, account 0 = $owner) checks the attestation, then acknowledges the signer"
signer=$("$ZG" inference list-providers --json \
  | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["provider"].lower() == sys.argv[1].lower()][0]["tee_signer"])' "$provider")
ZG_PRIVATE_KEY="$owner_key" ZG_DATA_DIR="$work/owner" "$ZG" inference verify --provider "$provider" --allow-simulated >/dev/null \
  || fail "the owner's attestation check failed"
echo "anyone but the owner is refused, and told who the owner is (expected to fail):" >&2
if ZG_PRIVATE_KEY="$customer_key" "$ZG" owner acknowledge-tee-signer --provider "$provider" --service inference; then
  fail "a non-owner acknowledged a TEE signer"
fi
ZG_PRIVATE_KEY="$owner_key" "$ZG" owner acknowledge-tee-signer --provider "$provider" --service inference --signer "$signer"
acked=$("$ZG" inference list-providers --json \
  | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["provider"].lower() == sys.argv[1].lower()][0]["tee_signer_acknowledged"])' "$provider")
[ "$acked" = "True" ] || fail "the owner's acknowledgement is not on chain"

step "customer $customer opens a ledger with 10 0G and funds the provider's sub-account with 3 0G"
"$ZG" add-account --amount 10 >/dev/null
echo "an over-transfer is refused before sending, with the fix (expected to fail):" >&2
if "$ZG" transfer-fund --provider "$provider" --amount 100; then fail "over-transfer accepted"; fi
"$ZG" transfer-fund --provider "$provider" --amount 3 >/dev/null
"$ZG" get-sub-account --provider "$provider"
sub_before=$("$ZG" get-sub-account --provider "$provider" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["neuron"])')

step "verify the provider WITHOUT --allow-simulated: refused (expected to fail)"
if "$ZG" inference verify 2> "$work/refused.txt"; then fail "a simulated TEE was accepted without --allow-simulated"; fi
grep -q "SIMULATED" "$work/refused.txt" || fail "the refusal does not say SIMULATED"
cat "$work/refused.txt" >&2

step "verify the provider with --allow-simulated: fresh nonce, key binding, on-chain signer, allow-listed image, GPU report"
"$ZG" inference verify --allow-simulated
export ZG_ALLOW_SIMULATED=1

step "the customer acknowledges the verified TEE signer for its sub-account (its address is recorded on chain)"
"$ZG" inference acknowledge-provider >/dev/null
"$ZG" get-sub-account --provider "$provider" --json > "$work/sub.json"
[ "$(json "$work/sub.json" 'd["acknowledged"]')" = "True" ] || fail "the customer's acknowledgement is not on chain"
echo "customer $customer acknowledged TEE signer $signer of $provider" >&2

step "native chat over the provider's gRPC API, which its service advertises (signed request + voucher; receipt verified before the answer is printed)"
"$ZG" inference chat --temperature 0 --max-tokens 40 "Name the capital of France."

step "native streaming chat"
"$ZG" inference chat --stream --temperature 0 --max-tokens 40 "In one sentence, what does a signature prove?"

step "zg serve: a local OpenAI-compatible endpoint; the official openai Python client, unchanged"
"$ZG" serve --port 0 --json > "$work/serve.json" 2> "$work/serve.log" &
pids+=($!)
wait_json "$work/serve.json" "${pids[-1]}" "$work/serve.log"
serve_url=$(json "$work/serve.json" 'd["url"]')
model=$(json "$work/serve.json" 'd["model"]')
serve_key=$(json "$work/serve.json" 'd["api_key"]')   # generated by zg serve, printed once
OPENAI_BASE_URL="$serve_url" OPENAI_API_KEY="$serve_key" MODEL="$model" "$PY" - <<'PYEOF'
import base64, json, os, urllib.request
import openai

client = openai.OpenAI()
model = os.environ["MODEL"]
raw = client.chat.completions.with_raw_response.create(
    model=model, max_tokens=40, temperature=0, messages=[{"role": "user", "content": "In one sentence, what is a GPU?"}])
answer = raw.parse()
assert raw.headers["zg-verified"] == "true"
receipt = json.loads(base64.urlsafe_b64decode(raw.headers["zg-receipt"] + "=="))
print(f"openai {openai.__version__} plain : {answer.choices[0].message.content!r}")
print(f"  receipt {receipt['key']} verified by zg serve; fee {raw.headers['zg-fee']} neuron; "
      f"usage {answer.usage.prompt_tokens}+{answer.usage.completion_tokens}")

raw = client.chat.completions.with_raw_response.create(
    model=model, max_tokens=40, temperature=0, stream=True, messages=[{"role": "user", "content": "Name three colours."}])
text = "".join((c.choices[0].delta.content or "") for c in raw.parse() if c.choices)
key = raw.headers["zg-res-key"]
base = os.environ["OPENAI_BASE_URL"].rsplit("/v1", 1)[0]
req = urllib.request.Request(f"{base}/zg/v1/receipts/{key}",
                             headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})
r = json.load(urllib.request.urlopen(req))
assert r["receipt"]["key"] == key
print(f"openai {openai.__version__} stream: {text!r}")
print(f"  receipt {key} verified by zg serve; fee {r['fee']} neuron")
PYEOF

step "deliver the voucher over the last answer, then wait for the provider's settlement loop"
"$ZG" inference flush-voucher
for _ in $(seq 1 60); do
  "$ZG" inference balance --json > "$work/balance.json"
  [ "$(json "$work/balance.json" 'd["balance"]["unsettled"]')" = "0" ] && break
  sleep 0.5
done
"$ZG" inference balance

step "balances before and after: the provider earned exactly the sum of the verified receipts"
sub_after=$("$ZG" get-sub-account --provider "$provider" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["balance"]["neuron"])')
receipts_log="$work/client/$(echo "$customer" | tr 'A-F' 'a-f')/$(echo "$provider" | tr 'A-F' 'a-f').receipts.jsonl"
python3 - "$receipts_log" "$work/balance.json" "$sub_before" "$sub_after" <<'PYEOF'
import json, sys
log, bal, before, after = sys.argv[1], json.load(open(sys.argv[2]))["balance"], int(sys.argv[3]), int(sys.argv[4])
fees = [int(json.loads(l)["fee"]) for l in open(log) if l.strip()]
total = sum(fees)
earned = before - after
print(f"verified receipts      {len(fees)}: " + " + ".join(map(str, fees)) + f" = {total} neuron")
print(f"sub-account before     {before} neuron")
print(f"sub-account after      {after} neuron")
print(f"provider earned        {earned} neuron (paid on chain through vouchers: {bal['paid']})")
ok = earned == total == int(bal["paid"]) == int(bal["owed"]) and int(bal["unsettled"]) == 0 and len(fees) == 4
print("OK: earnings == sum of receipts" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
PYEOF
step "withdraw 2.5 0G of the ledger's available balance back to the wallet; final balances"
"$ZG" refund --amount 2.5 >/dev/null
"$ZG" get-account

step "the fine-tuning act (scripts/demo-ft.sh, also \`just demo-ft\`) on the same devnet"
ZG_DEMO_DEVNET="$work/devnet.json" ZG_DEMO_PROVIDER="$provider" scripts/demo-ft.sh

echo >&2
echo "demo: every step verified ($(( $(date +%s) - started )) s)" >&2
