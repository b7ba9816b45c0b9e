#!/usr/bin/env node
// ABI compatibility check: our compiled contracts vs the official 0G Compute contracts' ABI
// (reference/0g-abi/, from @0gfoundation/0g-compute-ts-sdk 0.9.0).
//
//   node scripts/check-abi.mjs            # compares artifacts/<Name>.json (the committed artifacts)
//   node scripts/check-abi.mjs --out      # compares forge's out/ instead
//
// For every reference function: same selector (name + canonical input types), same canonical output
// types (full tuple layouts), same mutability class (payable / state-changing / read-only).
// For every reference event: same topic0 (name + canonical types) and the same indexed parameters.
// `receive()` must exist where the reference has one. Custom errors are compared too but only reported
// (their selectors never reach the official client's decision logic).
// Exits 1 listing every missing or different entry that is not on the allow-list below.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CONTRACTS = ['LedgerManager', 'InferenceServing', 'FineTuningServing'];

// Reference entries we deliberately do not match. Keep this minimal; every entry needs a reason.
// Keys: `<Contract>.<function|event> <signature>`.
const ALLOW = {
  // 0G's contracts sit behind proxies and are initialised after deployment. Ours take their
  // configuration in the constructor (no proxies, see README "Deployment"), so `initialize` exists with
  // the same selector but only reverts AlreadyInitialized: it reads no state, hence `pure`.
  'LedgerManager.function initialize(address)': 'constructor-configured; reverts AlreadyInitialized (pure)',
  'InferenceServing.function initialize(uint256,address,address)': 'constructor-configured; reverts AlreadyInitialized (pure)',
  'FineTuningServing.function initialize(uint256,address,address,uint256)':
    'constructor-configured; reverts AlreadyInitialized (pure)',
};

const canon = (p) => (p.type.startsWith('tuple') ? `(${p.components.map(canon).join(',')})${p.type.slice(5)}` : p.type);
const sig = (e) => `${e.name}(${e.inputs.map(canon).join(',')})`;
const outs = (e) => `(${(e.outputs || []).map(canon).join(',')})`;
const mutClass = (m) => (m === 'payable' ? 'payable' : m === 'nonpayable' ? 'state-changing' : 'read-only');
const indexed = (e) => e.inputs.map((p) => (p.indexed ? 'indexed' : '-')).join(',');

function loadOurs(name, useOut) {
  const file = useOut ? path.join(root, 'out', `${name}.sol`, `${name}.json`) : path.join(root, 'artifacts', `${name}.json`);
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run forge build (and scripts/artifacts.mjs write)`);
  return JSON.parse(fs.readFileSync(file, 'utf8')).abi;
}

const useOut = process.argv.includes('--out');
const failures = [];
const notes = [];
const allowedUsed = new Set();
let checked = 0;

for (const name of CONTRACTS) {
  const ref = JSON.parse(fs.readFileSync(path.join(root, 'reference', '0g-abi', `${name}.abi.json`), 'utf8'));
  const ours = loadOurs(name, useOut);
  const byKind = (abi, type) => new Map(abi.filter((e) => e.type === type).map((e) => [sig(e), e]));
  const ourFns = byKind(ours, 'function');
  const ourEvents = byKind(ours, 'event');
  const ourErrors = byKind(ours, 'error');
  const problem = (key, what) => {
    const k = `${name}.${key}`;
    if (ALLOW[k] !== undefined) {
      allowedUsed.add(k);
      return;
    }
    failures.push(`${k}: ${what}`);
  };

  for (const e of ref) {
    if (e.type === 'function') {
      checked++;
      const key = `function ${sig(e)}`;
      const o = ourFns.get(sig(e));
      if (!o) {
        problem(key, 'missing');
        continue;
      }
      if (outs(o) !== outs(e)) problem(key, `returns ${outs(o)}, reference returns ${outs(e)}`);
      if (mutClass(o.stateMutability) !== mutClass(e.stateMutability)) {
        problem(key, `is ${o.stateMutability}, reference is ${e.stateMutability}`);
      }
    } else if (e.type === 'event') {
      checked++;
      const key = `event ${sig(e)}`;
      const o = ourEvents.get(sig(e));
      if (!o) {
        problem(key, 'missing');
        continue;
      }
      if (indexed(o) !== indexed(e)) problem(key, `indexed [${indexed(o)}], reference [${indexed(e)}]`);
      if (!!o.anonymous !== !!e.anonymous) problem(key, 'anonymous flag differs');
    } else if (e.type === 'receive') {
      checked++;
      if (!ours.some((x) => x.type === 'receive')) problem('receive()', 'missing');
    } else if (e.type === 'error') {
      if (!ourErrors.has(sig(e))) notes.push(`${name}.error ${sig(e)}: not declared (informational)`);
    }
  }
}

for (const k of Object.keys(ALLOW)) {
  if (!allowedUsed.has(k)) failures.push(`allow-list entry "${k}" is no longer needed: remove it`);
}
if (process.argv.includes('--verbose')) for (const n of notes) console.log(n);
if (failures.length) {
  console.error(`ABI check FAILED (${failures.length}):\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(
  `ABI check passed: ${checked} reference functions/events/receive checked, ${allowedUsed.size} allow-listed, ` +
    `${notes.length} reference errors not declared (informational; --verbose lists them)`,
);
