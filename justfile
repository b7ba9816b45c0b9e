# zg-compute task runner. `just` lists the recipes; README.md explains them.
set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()
# The real foundry binaries (not the npm node shims, which orphan anvil when killed) and our pinned tools.
export PATH := root / "node_modules/@foundry-rs/anvil-linux-amd64/bin" + ":" + root / "node_modules/@foundry-rs/forge-linux-amd64/bin" + ":" + root / "node_modules/@foundry-rs/cast-linux-amd64/bin" + ":" + root / ".tools/bin" + ":" + env_var("PATH")

# List the recipes.
default:
    @just --list

# Install the pinned tools the demo needs (solc-js, anvil, forge, cast, the 0G SDK from npm; openai from PyPI). Idempotent.
setup:
    scripts/setup.sh

# `setup` plus the test-only tools (cargo-deny, and cargo-nextest if missing, from crates.io). Idempotent.
setup-test:
    scripts/setup.sh --test

# Compile the Solidity contracts with the pinned solc and refresh the committed artifacts.
contracts: setup
    cd contracts && forge build && node scripts/artifacts.mjs write

# The whole test suite: contracts, artifact and ABI checks, Rust tests against anvil, doctests, dependency policy.
test: setup-test
    cargo fmt --all --check
    cd contracts && node scripts/artifacts.mjs check && node scripts/check-abi.mjs
    cd contracts && forge test
    cargo nextest run --workspace --locked
    cargo test --workspace --doc --locked
    cargo deny --locked check --hide-inclusion-graph bans licenses sources

# Lints that CI also runs: clippy with warnings as errors, formatting.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Devnet, provider (simulated TEE, demo model), verified chat, zg serve + openai, settlement; exits 0 only if all verified.
demo: setup
    scripts/demo.sh

# The fine-tuning act alone: LoRA on SmolLM2 with a live log, checked adapter, settlement with the key, decrypt,
# deploy to a provider over gRPC (mutual attestation), base vs fine-tuned answers, a stranger refused.
demo-ft: setup
    scripts/demo-ft.sh

# Benchmarks (criterion); figures land in target/criterion.
bench:
    cargo bench --workspace

# Forge gas report for settlement (settleFeesWithTEE vs settleVouchers).
gas: setup
    cd contracts && forge test --match-contract GasReport -vv

# libFuzzer needs nightly features, hence RUSTC_BOOTSTRAP; not part of `just test`.
# Fuzz the parsers of untrusted bytes for SECONDS each (cargo-fuzz; findings land in crates/*/fuzz/artifacts).
fuzz SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    mkdir -p crates/attestation/fuzz/corpus/rim_wrap && cp testdata/gpu/NV_GPU_*.xml crates/attestation/fuzz/corpus/rim_wrap/
    cd crates/attestation && for t in quote event_log gpu; do RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $t -- -max_total_time={{SECONDS}}; done
    cd crates/attestation && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none rim_wrap -- -max_total_time={{SECONDS}} -max_len=65536
    cd crates/billing && for t in session_token signed_request; do RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $t -- -max_total_time={{SECONDS}}; done
    cd crates/sealing && for t in unseal tamper; do RUSTC_BOOTSTRAP=1 cargo fuzz run -s none $t -- -max_total_time={{SECONDS}}; done
