#!/usr/bin/env bash
# `just demo`: a local devnet and one customer's walk through the ledger, printing balances at each step.
# Exits non-zero as soon as any step fails. Later issues extend it with a provider, verified chat and settlement.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "building zg"
cargo build --locked --quiet -p zg-cli
ZG="$PWD/target/debug/zg"

work=$(mktemp -d)
devnet_pid=""
cleanup() { [ -n "$devnet_pid" ] && kill "$devnet_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

step "starting the devnet (anvil + LedgerManager, InferenceServing, FineTuningServing)"
"$ZG" devnet up --port 0 --json > "$work/devnet.json" 2> "$work/devnet.log" &
devnet_pid=$!
for _ in $(seq 1 100); do
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/devnet.json" 2>/dev/null && break
  kill -0 "$devnet_pid" 2>/dev/null || { cat "$work/devnet.log" >&2; exit 1; }
  sleep 0.2
done
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$work/devnet.json" "$1"; }
export ZG_RPC_URL; ZG_RPC_URL=$(field 'd["rpc_url"]')
customer_key=$(field 'd["accounts"][1]["private_key"]')
customer=$(field 'd["accounts"][1]["address"]')
provider=$(field 'd["accounts"][2]["address"]')
echo "rpc $ZG_RPC_URL" >&2
echo "ledger $(field 'd["contracts"]["ledger"]')  inference $(field 'd["contracts"]["inference"]')  fine-tuning $(field 'd["contracts"]["fine_tuning"]')" >&2

# The customer's key stays in the environment (never on the command line) for the commands below.
export ZG_PRIVATE_KEY="$customer_key"

step "customer $customer opens a ledger with 10 0G"
"$ZG" add-account --amount 10

step "an over-transfer: the client's refusal comes back as a fix (expected to fail)"
if "$ZG" transfer-fund --provider "$provider" --amount 100; then echo "unexpected success" >&2; exit 1; fi

step "fund provider $provider's inference sub-account with 4 0G"
"$ZG" transfer-fund --provider "$provider" --amount 4
"$ZG" get-sub-account --provider "$provider"

step "ask for the sub-account's funds back (they unlock after the lock time)"
"$ZG" retrieve-fund --provider "$provider"
"$ZG" get-sub-account --provider "$provider"

step "withdraw 2.5 0G of the available balance to the wallet"
"$ZG" refund --amount 2.5

step "final balances"
"$ZG" get-account
echo >&2
echo "demo: every step succeeded" >&2
