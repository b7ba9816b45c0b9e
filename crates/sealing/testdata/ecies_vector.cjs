// Generates (or checks) the eciesjs compatibility vectors for zg-sealing's ECIES key wrap.
//
//   eciesjs 0.4.18 is pinned in the repository's package.json (npm ci); run with NODE_PATH=<repo>/node_modules
//   node ecies_vector.cjs > eciesjs_vector.json
//   node ecies_vector.cjs decrypt <receiver-sk-hex> <payload-hex>   # checks a payload made by zg-sealing
//
// eciesjs defaults: secp256k1, uncompressed ephemeral key, HKDF-SHA256 over (ephemeral pk ‖ shared point),
// both uncompressed, AES-256-GCM with a 16-byte nonce; payload = ephemeral pk 65 ‖ nonce 16 ‖ tag 16 ‖ ct.
const { encrypt, decrypt, PrivateKey } = require('eciesjs');

if (process.argv[2] === 'decrypt') {
  const out = decrypt(process.argv[3], Buffer.from(process.argv[4].replace(/^0x/, ''), 'hex'));
  process.stdout.write(Buffer.from(out).toString('hex') + '\n');
  process.exit(0);
}

// Fixed receiver key (anvil account #1) so the vector is reproducible in its inputs; the ephemeral key and
// nonce are random, so each run yields a different but equally valid payload.
const receiverSk = '59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d';
const receiver = PrivateKey.fromHex(receiverSk);
const cases = [
  { name: 'aes-key', plaintext: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' },
  { name: 'text', plaintext: Buffer.from('zg-sealing <-> eciesjs interop').toString('hex') },
];
const vectors = cases.map((c) => ({
  name: c.name,
  plaintext: c.plaintext,
  payload: Buffer.from(encrypt(receiver.publicKey.toHex(false), Buffer.from(c.plaintext, 'hex'))).toString('hex'),
}));
const doc = {
  generator: 'eciesjs ' + JSON.parse(require('fs').readFileSync(require.resolve('eciesjs').replace(/dist[\\/]index\.js$/, 'package.json'))).version + ', node ' + process.version,
  receiver_sk: receiverSk,
  receiver_pk_uncompressed: receiver.publicKey.toHex(false),
  vectors,
};
process.stdout.write(JSON.stringify(doc, null, 2) + '\n');
