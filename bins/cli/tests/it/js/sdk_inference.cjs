// The official 0G SDK (@0gfoundation/0g-compute-ts-sdk 0.9.0) used exactly as its README shows, against our
// contracts and provider: broker from an ethers wallet (contract addresses auto-detected for chain 31337),
// listService, getServiceMetadata, getRequestHeaders, a plain and a streamed chat with fetch, and
// processResponse, which recovers the provider's EIP-191 response signature to the on-chain teeSignerAddress.
//
//   node sdk_inference.cjs <rpc> <customer key hex> <provider address> <prompt>
//
// Run by bins/cli/tests/it/official_cli.rs with NODE_PATH=<repo>/node_modules. The SDK logs to stdout
// ("Detected hardhat ..."), so the result is the one line that starts with "RESULT ".
// Beyond what processResponse checks, it also checks what the SDK does not: that the signed `text` is
// sha256(request body) ":" sha256(response bytes as received), computed here from the bytes fetch saw.
'use strict';
const crypto = require('crypto');
const { ethers } = require('ethers');
const { createZGComputeNetworkBroker } = require('@0gfoundation/0g-compute-ts-sdk');

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function signedText(url, chatID, model) {
  const r = await fetch(`${url}/v1/proxy/signature/${chatID}?model=${encodeURIComponent(model)}`);
  return r.ok ? r.json() : { status: r.status };
}

async function chat(broker, provider, svc, prompt, stream) {
  const { endpoint, model } = await broker.inference.getServiceMetadata(provider);
  const headers = await broker.inference.getRequestHeaders(provider);
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 12, stream });
  const resp = await fetch(`${endpoint}/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body,
  });
  const raw = Buffer.from(await resp.arrayBuffer());
  const chatID = resp.headers.get('ZG-Res-Key');
  let answer = '';
  let usage = null;
  if (stream) {
    for (const line of raw.toString('utf8').split('\n')) {
      if (!line.startsWith('data: ') || line.trim() === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6));
      answer += chunk.choices?.[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
  } else {
    const data = JSON.parse(raw.toString('utf8'));
    answer = data.choices?.[0]?.message?.content ?? '';
    usage = data.usage;
  }
  // The SDK's own verification (README: processResponse(provider, chatID, usage)).
  const valid = await broker.inference.processResponse(provider, chatID, JSON.stringify(usage));
  const sig = await signedText(svc.url, chatID, model);
  return {
    status: resp.status,
    exposeHeaders: resp.headers.get('access-control-expose-headers'),
    chatID,
    answer,
    usage,
    valid,
    signedText: sig.text,
    expectedText: `${sha256(body)}:${sha256(raw)}`,
    signingAddress: sig.signing_address,
    recovered: sig.text ? ethers.verifyMessage(sig.text, sig.signature) : null,
  };
}

(async () => {
  const [rpc, key, provider, prompt] = process.argv.slice(2);
  const wallet = new ethers.Wallet(key, new ethers.JsonRpcProvider(rpc));
  const broker = await createZGComputeNetworkBroker(wallet);
  const listed = await broker.inference.listService();
  const all = await broker.inference.listService(0, 50, true);
  const svc = all.find((s) => s.provider.toLowerCase() === provider.toLowerCase());
  if (!svc) throw new Error(`provider ${provider} is not on chain`);
  const plain = await chat(broker, provider, svc, prompt, false);
  const streamed = await chat(broker, provider, svc, prompt, true);
  // Fail-closed check of the SDK against our provider: an unknown chat id must not verify.
  let unknown;
  try {
    unknown = await broker.inference.processResponse(provider, '00'.repeat(16), undefined);
  } catch (e) {
    unknown = `threw: ${e.message}`;
  }
  const result = {
    listed: listed.map((s) => s.provider),
    service: {
      provider: svc.provider,
      url: svc.url,
      model: svc.model,
      serviceType: svc.serviceType,
      verifiability: svc.verifiability,
      inputPrice: svc.inputPrice.toString(),
      outputPrice: svc.outputPrice.toString(),
      teeSignerAddress: svc.teeSignerAddress,
      teeSignerAcknowledged: svc.teeSignerAcknowledged,
    },
    plain,
    streamed,
    unknown,
  };
  process.stdout.write('\nRESULT ' + JSON.stringify(result) + '\n');
  process.exit(0);
})().catch((e) => {
  console.error('FAILED', e);
  process.exit(1);
});
