// Decrypts a zg-sealing file with the official SDK's aesGCMDecryptToFile and compares with the plaintext.
// Run from a directory where `npm install @0gfoundation/0g-compute-ts-sdk@0.9.0` was done (see README.md).
const { aesGCMDecryptToFile } = require(require('path').join(process.cwd(), 'node_modules/@0gfoundation/0g-compute-ts-sdk/lib.commonjs/common/utils/encrypt.js'));
const fs = require('fs');
const [key, sealed, out, signer, expected] = process.argv.slice(2);
aesGCMDecryptToFile(key, sealed, out, signer).then(() => {
  const same = Buffer.compare(fs.readFileSync(out), fs.readFileSync(expected)) === 0;
  console.log(same ? 'OK: official SDK decrypted and verified the tag signature' : 'MISMATCH');
  process.exit(same ? 0 : 1);
}, (e) => { console.log('FAILED', e.message); process.exit(1); });
