// The official JavaScript side of a sealed deliverable, run live by tests/it/official.rs with
// NODE_PATH=<repo>/node_modules (the pinned @0gfoundation/0g-compute-ts-sdk 0.9.0, eciesjs 0.4.18, ethers 6).
//
//   node official.cjs open <customer sk hex> <encryptedSecret hex> <sealed file> <out file> <tee signer address>
//       The two calls the SDK's `broker.fineTuning.decryptModel` makes (lib.commonjs/fine-tuning/broker/model.js):
//       eciesDecrypt(wallet, encryptedSecret) then aesGCMDecryptToFile(secret, sealed, out, teeSignerAddress).
//   node official.cjs open-raw <aes key hex> <sealed file> <out file> <tee signer address>
//       aesGCMDecryptToFile alone, for a key already in the clear.
//   node official.cjs wrap <receiver uncompressed pk hex> <plaintext hex>
//       eciesjs encrypt(), what a 0G provider does to the AES key for the customer (encryptedSecret).
//   node official.cjs seal <aes key hex> <iv hex> <tee sk hex> <plain file> <out file> [chunk bytes]
//       A sealer built from the SDK's own AES-GCM adapter (getCryptoAdapter().aesGCMEncrypt) and ethers'
//       signing key, in the layout the SDK's aesGCMDecryptToFile reads: sig(65) ‖ iv(12) ‖ per chunk ct ‖ tag,
//       IV + 1 (big-endian) per chunk, sig = raw secp256k1 over keccak256(all tags). The SDK ships no sealer
//       (0G's provider seals in Go), so this is the reverse of the official reader, not an official writer.
//
// Prints one line "RESULT <json>"; errors are results too ({"ok":false,"error":...}), so the test asserts them.
'use strict';
const fs = require('fs');
const path = require('path');
const { ethers } = require('ethers');
const eciesjs = require('eciesjs');
const sdkDir = path.dirname(require.resolve('@0gfoundation/0g-compute-ts-sdk'));
// Not in the package's exports map, so required by path: the functions decryptModel calls.
const { eciesDecrypt, aesGCMDecryptToFile } = require(path.join(sdkDir, 'common/utils/encrypt.js'));
const { getCryptoAdapter } = require(path.join(sdkDir, 'common/utils/crypto-adapter.js'));

const result = (r) => process.stdout.write('RESULT ' + JSON.stringify(r) + '\n');
const hex = (s) => Buffer.from(s.replace(/^0x/, ''), 'hex');

async function open([sk, secret, sealed, out, signer]) {
  const wallet = new ethers.Wallet('0x' + sk.replace(/^0x/, ''));
  const key = await eciesDecrypt(wallet, secret);
  await aesGCMDecryptToFile(key, sealed, out, signer);
  return { ok: true, key };
}

async function openRaw([key, sealed, out, signer]) {
  await aesGCMDecryptToFile(key.replace(/^0x/, ''), sealed, out, signer);
  return { ok: true };
}

async function wrap([pk, plaintext]) {
  return { ok: true, payload: Buffer.from(eciesjs.encrypt(pk, hex(plaintext))).toString('hex') };
}

async function seal([key, iv, teeSk, plainPath, outPath, chunkArg]) {
  const chunk = chunkArg ? Number(chunkArg) : 64 * 1024 * 1024;
  const crypto = getCryptoAdapter();
  const plain = fs.readFileSync(plainPath);
  const counter = hex(iv);
  const parts = [];
  const tags = [];
  for (let off = 0; off < plain.length; off += chunk) {
    const { encrypted, authTag } = await crypto.aesGCMEncrypt(hex(key), plain.subarray(off, off + chunk), counter);
    parts.push(encrypted, authTag);
    tags.push(authTag);
    for (let i = counter.length - 1; i >= 0; i--) {
      counter[i] = (counter[i] + 1) & 0xff;
      if (counter[i] !== 0) break;
    }
  }
  const sig = new ethers.SigningKey('0x' + teeSk.replace(/^0x/, '')).sign(ethers.keccak256(Buffer.concat(tags)));
  fs.writeFileSync(outPath, Buffer.concat([hex(sig.serialized), hex(iv), ...parts]));
  return { ok: true, signer: ethers.computeAddress('0x' + teeSk.replace(/^0x/, '')), chunks: tags.length };
}

const modes = { open, 'open-raw': openRaw, wrap, seal };
const [mode, ...args] = process.argv.slice(2);
(modes[mode] || (async () => ({ ok: false, error: `unknown mode ${mode}` })))(args)
  .then(result, (e) => result({ ok: false, error: String(e && e.message ? e.message : e) }))
  .then(() => process.exit(0));
