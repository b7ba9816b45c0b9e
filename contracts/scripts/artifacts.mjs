#!/usr/bin/env node
// Committed contract artifacts: contracts/artifacts/<Name>.json = {abi, bytecode:{object}, deployedBytecode:{object}}
// copied from forge's out/ (alloy's `sol!` reads this shape; Rust builds never need solc).
//
//   node scripts/artifacts.mjs write   # after `forge build`: refresh the committed files
//   node scripts/artifacts.mjs check   # runs `forge build`, exits 1 naming every file that differs
//                                      # (add --no-build to compare the existing out/ instead)
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONTRACTS = ['LedgerManager', 'InferenceServing', 'FineTuningServing'];

/** JSON with object keys sorted at every level (arrays keep their order), 2-space indent, trailing newline. */
function canonical(value) {
  const sort = (v) => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2) + '\n';
}

function fresh(name) {
  const file = path.join(root, 'out', `${name}.sol`, `${name}.json`);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run \`forge build\` in contracts/ first`);
  const out = JSON.parse(fs.readFileSync(file, 'utf8'));
  return canonical({
    abi: out.abi,
    bytecode: { object: out.bytecode.object },
    deployedBytecode: { object: out.deployedBytecode.object },
  });
}

function forgeBuild() {
  const local = path.join(root, '..', 'node_modules', '@foundry-rs', 'forge-linux-amd64', 'bin', 'forge');
  const forge = fs.existsSync(local) ? local : 'forge';
  execFileSync(forge, ['build'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

const [mode, ...flags] = process.argv.slice(2);
const dir = path.join(root, 'artifacts');
if (mode === 'write') {
  fs.mkdirSync(dir, { recursive: true });
  for (const name of CONTRACTS) {
    fs.writeFileSync(path.join(dir, `${name}.json`), fresh(name));
    console.log(`wrote artifacts/${name}.json`);
  }
} else if (mode === 'check') {
  if (!flags.includes('--no-build')) forgeBuild();
  const differing = [];
  for (const name of CONTRACTS) {
    const committed = path.join(dir, `${name}.json`);
    const want = fresh(name);
    if (!fs.existsSync(committed) || fs.readFileSync(committed, 'utf8') !== want) differing.push(`artifacts/${name}.json`);
  }
  if (differing.length) {
    console.error(`committed artifacts differ from a fresh compile:\n  ${differing.join('\n  ')}`);
    console.error('run `forge build && node scripts/artifacts.mjs write` in contracts/ and commit the result');
    process.exit(1);
  }
  console.log(`artifacts up to date (${CONTRACTS.length} contracts)`);
} else {
  console.error('usage: node scripts/artifacts.mjs write|check [--no-build]');
  process.exit(2);
}
