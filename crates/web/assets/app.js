// zg dashboard. Plain JavaScript, no build step, no dependencies, nothing loaded from the network but this server.
// Every string from the chain or a provider is untrusted: it is only ever set as textContent (never innerHTML),
// and never used as a link target.
'use strict';

// ---------------------------------------------------------------- session token and API
const TOKEN_KEY = 'zg-web-token';
(function takeToken() {
  const m = /(?:^#|&)token=([0-9a-f]{64})/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, m[1]);
    // Drop the token from the address bar and history.
    history.replaceState(null, '', location.pathname + '#/account');
  }
})();
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

class ApiError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}

async function api(method, path, body) {
  const init = { method, headers: { authorization: 'Bearer ' + token() }, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try { resp = await fetch(path, init); } catch (e) {
    throw new ApiError('The dashboard server is not answering (was `zg web` stopped?): ' + e.message, 'offline', 0);
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const err = json && json.error ? json.error : { message: text || resp.statusText, code: 'http_' + resp.status };
    throw new ApiError(err.message, err.code, resp.status);
  }
  return json;
}

// ---------------------------------------------------------------- DOM helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}
function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel) => document.querySelector(sel);
const main = () => $('#main');
function errorBox(e, id) {
  return h('div', { class: 'error', role: 'alert', id: id || null }, e instanceof Error ? e.message : String(e));
}
function short(addr) { return addr && addr.length > 14 ? addr.slice(0, 8) + '…' + addr.slice(-6) : String(addr || ''); }
function zg(a) { return a ? a.zg + ' 0G' : '—'; }
function neuron(a) { return a ? a.neuron + ' neuron' : ''; }
function amountCell(a) { return h('span', {}, h('span', {}, zg(a)), h('br'), h('span', { class: 'muted mono' }, neuron(a))); }
function when(secs) { return secs ? new Date(secs * 1000).toLocaleString() : '—'; }
function duration(secs) {
  secs = Math.max(0, Math.round(secs));
  const d = Math.floor(secs / 86400), hh = Math.floor(secs % 86400 / 3600), m = Math.floor(secs % 3600 / 60), s = secs % 60;
  return [d && d + 'd', hh && hh + 'h', m && m + 'm', (!d && !hh) && s + 's'].filter(Boolean).join(' ') || '0s';
}
function table(headers, rows, attrs) {
  return h('table', attrs || {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows));
}

let busyCount = 0;
async function busy(text, fn) {
  busyCount++;
  $('#busy-text').textContent = text;
  $('#busy').hidden = false;
  try { return await fn(); } finally {
    if (--busyCount === 0) $('#busy').hidden = true;
  }
}

/** Shows the confirmation dialog; resolves true when the customer confirms. */
function confirmDialog(title, body) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = title;
  const b = $('#confirm-body');
  b.replaceChildren(body);
  return new Promise((resolve) => {
    const done = (v) => { dlg.close(); ok.removeEventListener('click', yes); cancel.removeEventListener('click', no); dlg.removeEventListener('cancel', no); resolve(v); };
    const ok = $('#confirm-ok'), cancel = $('#confirm-cancel');
    const yes = () => done(true), no = (ev) => { if (ev) ev.preventDefault(); done(false); };
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dlg.addEventListener('cancel', no);
    dlg.showModal();
    cancel.focus();
  });
}

// ---------------------------------------------------------------- charts (inline SVG, drawn here)
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
function fmt(n, unit) {
  if (!isFinite(n)) return '0';
  if (unit === 'neuron') return n === 0 ? '0 0G' : (n / 1e18).toPrecision(3) + ' 0G';
  const a = Math.abs(n);
  for (const [d, u] of [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']]) if (a >= d) return (n / d).toPrecision(3) + u;
  return String(Math.round(n * 100) / 100);
}
/** Vertical bars: [{label, value}]. A hidden table carries the same numbers for screen readers. */
function barChart(title, data, unit) {
  const W = 480, H = 170, pad = 28, n = Math.max(1, data.length);
  const top = Math.max(0, ...data.map((d) => d.value));
  const max = top || 1;
  const bw = (W - pad * 2) / n;
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  svg.append(s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#aab3bd' }));
  data.forEach((d, i) => {
    const bh = (H - pad * 2) * (d.value / max);
    const x = pad + i * bw + bw * 0.15;
    svg.append(s('rect', { x, y: H - pad - bh, width: bw * 0.7, height: Math.max(bh, d.value > 0 ? 1 : 0), fill: '#1d4ed8', rx: 2 },
      s('title', {}, `${d.label}: ${fmt(d.value, unit)}`)));
    if (n <= 8 || (n - 1 - i) % Math.ceil(n / 7) === 0) svg.append(s('text', { x: x + bw * 0.35, y: H - pad + 14, 'text-anchor': 'middle' }, d.label));
  });
  svg.append(s('text', { x: pad, y: 14 }, top ? `max ${fmt(top, unit)}` : 'nothing yet'));
  return h('figure', { style: 'margin:0' }, h('figcaption', { class: 'muted' }, title), svg,
    table(['', unit], data.map((d) => h('tr', {}, h('td', {}, d.label), h('td', {}, fmt(d.value, unit)))), { class: 'sr-only' }));
}
/** Lines over time: series [{name, color, points: [[t, v]]}]. */
function lineChart(title, series, unit) {
  const W = 480, H = 170, pad = 30;
  const pts = series.flatMap((x) => x.points);
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  if (pts.length < 2) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'collecting samples…'));
    return h('figure', { style: 'margin:0' }, h('figcaption', { class: 'muted' }, title), svg);
  }
  const t0 = Math.min(...pts.map((p) => p[0])), t1 = Math.max(...pts.map((p) => p[0]), t0 + 1);
  const top = Math.max(0, ...pts.map((p) => p[1]));
  const max = top || 1;
  const X = (t) => pad + (W - pad * 2) * (t - t0) / (t1 - t0), Y = (v) => H - pad - (H - pad * 2) * v / max;
  svg.append(s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#aab3bd' }));
  series.forEach((x, i) => {
    if (!x.points.length) return;
    svg.append(s('polyline', { fill: 'none', stroke: x.color, 'stroke-width': 2, points: x.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(' ') }));
    svg.append(s('text', { x: W - pad, y: 14 + i * 13, 'text-anchor': 'end', fill: x.color }, `${x.name}: ${fmt(x.points[x.points.length - 1][1], unit)}`));
  });
  svg.append(s('text', { x: pad, y: 14 }, `max ${fmt(top, unit)}`));
  svg.append(s('text', { x: pad, y: H - 8 }, new Date(t0 * 1000).toLocaleTimeString()));
  svg.append(s('text', { x: W - pad, y: H - 8, 'text-anchor': 'end' }, new Date(t1 * 1000).toLocaleTimeString()));
  return h('figure', { style: 'margin:0' }, h('figcaption', { class: 'muted' }, title), svg);
}

// ---------------------------------------------------------------- shared state
let session = null;
let servicesCache = null;
async function services(force) {
  if (!servicesCache || force) servicesCache = await api('GET', '/api/providers');
  return servicesCache;
}

// ---------------------------------------------------------------- Account
async function pageAccount(root) {
  root.append(h('h1', {}, 'Account'));
  const body = h('div', { id: 'account-body' }, h('p', { class: 'muted' }, 'Loading the ledger from the chain…'));
  root.append(body);
  const acct = await api('GET', '/api/account');
  const cards = h('div', { class: 'cards' },
    card('Wallet', acct.wallet, 'wallet'),
    card('Ledger available', acct.ledger && acct.ledger.available, 'available'),
    card('In sub-accounts', acct.ledger && acct.ledger.in_sub_accounts, 'in-sub'),
    card('Ledger total', acct.ledger && acct.ledger.total, 'total'));
  const parts = [cards];
  if (!acct.ledger) parts.push(h('div', { class: 'notice' }, 'You have no ledger yet. Deposit below creates it (the contract asks for a minimum first deposit, 3 0G by default).'));
  // Sub-accounts and refunds.
  const rows = acct.sub_accounts.map((r) => h('tr', { 'data-provider': r.provider },
    h('td', {}, r.service),
    h('td', { class: 'mono' }, r.provider),
    h('td', { class: 'sub-balance' }, amountCell(r.balance)),
    h('td', {}, amountCell(r.pending_refund)),
    h('td', {}, r.acknowledged ? h('span', { class: 'ok' }, 'yes') : h('span', { class: 'muted' }, 'no')),
    h('td', {}, r.refunds.length ? h('ul', {}, r.refunds.map((f) => h('li', {},
      `${zg(f.amount)} · requested ${when(f.created_at)} · `,
      f.unlocked ? h('span', { class: 'ok' }, 'unlocked: Retrieve collects it')
        : h('span', {}, `unlocks ${when(f.unlock_at)} (in ${duration(f.unlock_at - acct.now)})`)))) : h('span', { class: 'muted' }, 'none'))));
  parts.push(h('section', { class: 'panel', 'aria-labelledby': 'subs-h' },
    h('h2', { id: 'subs-h' }, 'Sub-accounts'),
    rows.length ? table(['Service', 'Provider', 'Balance', 'Pending refund', 'Signer acknowledged', 'Refunds (lock ' + duration(acct.lock_time_secs) + ')'], rows, { id: 'sub-accounts' })
      : h('p', { class: 'muted', id: 'sub-accounts' }, 'No sub-accounts yet: transfer funds to a provider below.')));
  // Charts.
  const days = acct.spend.per_day.map((d) => ({ label: new Date(d.day * 1000).toISOString().slice(5, 10), value: Number(d.fees.neuron) }));
  const perProv = acct.spend.per_provider.map((p) => ({ label: short(p.provider), value: p.tokens }));
  parts.push(h('section', { class: 'panel', 'aria-labelledby': 'spend-h' },
    h('h2', { id: 'spend-h' }, 'Spend (verified receipts)'),
    h('div', { class: 'charts' },
      barChart('Spend per day, last 14 days (0G)', days, 'neuron'),
      barChart('Tokens per provider', perProv.length ? perProv : [{ label: 'none yet', value: 0 }], 'tokens'))));
  // Actions.
  parts.push(await txForm(acct));
  body.replaceChildren(...parts);
}

/** 0G rounded to 6 decimals for big numbers (the exact neuron amount is shown under it). */
function zgShort(a) {
  const [w, f = ''] = a.zg.split('.');
  // Shortened only when there is a whole part: small amounts (fees) stay exact.
  return w !== '0' && f.length > 6 ? `≈ ${w}.${f.slice(0, 6)} 0G` : a.zg + ' 0G';
}
function card(label, amount, id) {
  return h('div', { class: 'card', id: 'card-' + id },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, amount ? zgShort(amount) : '—'),
    h('div', { class: 'sub' }, amount ? neuron(amount) : ''));
}

async function txForm(acct) {
  let known = [];
  try {
    const sv = await services();
    known = sv.inference.map((x) => ({ p: x.provider, label: `${short(x.provider)} · ${x.model} (inference)`, kind: 'inference' }))
      .concat(sv.fine_tuning.map((x) => ({ p: x.provider, label: `${short(x.provider)} · fine-tuning`, kind: 'fine-tuning' })));
  } catch (_) { /* the form still works with a typed address */ }
  const action = h('select', { id: 'tx-action' },
    h('option', { value: 'deposit' }, 'Deposit (wallet → ledger)'),
    h('option', { value: 'transfer' }, 'Transfer (ledger → provider sub-account)'),
    h('option', { value: 'retrieve' }, 'Retrieve (sub-account → ledger, after the lock time)'),
    h('option', { value: 'refund' }, 'Refund (ledger → wallet)'));
  const amount = h('input', { id: 'tx-amount', type: 'text', inputmode: 'decimal', value: '1', size: 14, autocomplete: 'off' });
  const unit = h('select', { id: 'tx-unit', 'aria-label': 'Unit' }, h('option', { value: '0G' }, '0G'), h('option', { value: 'neuron' }, 'neuron'));
  const provider = h('input', { id: 'tx-provider', type: 'text', list: 'tx-providers', size: 44, placeholder: '0x… provider address', autocomplete: 'off', class: 'mono' });
  const dl = h('datalist', { id: 'tx-providers' }, known.map((k) => h('option', { value: k.p }, k.label)));
  if (known.length) provider.value = known[0].p;
  const service = h('select', { id: 'tx-service' }, h('option', { value: 'inference' }, 'inference'), h('option', { value: 'fine-tuning' }, 'fine-tuning'));
  const out = h('div', { id: 'tx-result', 'aria-live': 'polite' });
  const review = h('button', { id: 'tx-review', class: 'primary', type: 'button' }, 'Review…');
  const provWrap = h('div', {}, h('label', { for: 'tx-provider' }, 'Provider'), provider, dl);
  const svcWrap = h('div', {}, h('label', { for: 'tx-service' }, 'Service'), service);
  const amtWrap = h('div', {}, h('label', { for: 'tx-amount' }, 'Amount'), h('div', { class: 'row', style: 'margin:0' }, amount, unit));
  const sync = () => {
    const a = action.value;
    provWrap.hidden = !(a === 'transfer' || a === 'retrieve');
    svcWrap.hidden = provWrap.hidden;
    amtWrap.hidden = a === 'retrieve';
  };
  action.addEventListener('change', sync);
  sync();
  review.addEventListener('click', async () => {
    out.replaceChildren();
    const req = { action: action.value, amount: `${amount.value.trim()} ${unit.value}`, service: service.value };
    if (!provWrap.hidden) req.provider = provider.value.trim();
    review.disabled = true;
    try {
      const p = await busy('Estimating gas…', () => api('POST', '/api/tx/preview', req));
      const body = h('div', { id: 'tx-preview' },
        h('p', {}, p.description),
        h('dl', { class: 'kv' },
          h('dt', {}, 'Action'), h('dd', {}, p.action),
          p.amount ? [h('dt', {}, 'Amount'), h('dd', { id: 'preview-amount' }, `${p.amount.zg} 0G`, h('br'), h('span', { class: 'mono' }, `${p.amount.neuron} neuron`))] : null,
          h('dt', {}, 'Gas (estimate)'), h('dd', { id: 'preview-gas' }, `${p.gas} gas × ${p.gas_price.neuron} neuron`),
          h('dt', {}, 'Gas fee'), h('dd', { id: 'preview-gas-fee' }, `${p.gas_fee.zg} 0G`, h('br'), h('span', { class: 'mono' }, `${p.gas_fee.neuron} neuron`))));
      if (!(await confirmDialog('Confirm ' + p.action, body))) {
        out.append(h('p', { class: 'muted' }, 'Cancelled: nothing was sent.'));
        return;
      }
      const r = await busy('Sending the transaction and waiting for it to be mined…', () => api('POST', '/api/tx/send', req));
      servicesCache = null;
      await render();
      const res = $('#tx-result');
      if (res) res.replaceChildren(h('div', { class: 'notice', id: 'tx-done' },
        h('strong', {}, `${r.action}: mined`), ` in block ${r.tx.block}, gas used ${r.tx.gas_used}. `,
        h('span', { class: 'mono' }, 'tx ' + r.tx.tx)));
    } catch (e) {
      out.append(errorBox(e, 'tx-error'));
    } finally { review.disabled = false; }
  });
  return h('section', { class: 'panel', 'aria-labelledby': 'tx-h' },
    h('h2', { id: 'tx-h' }, 'Move funds'),
    h('p', { class: 'muted' }, 'Each action is previewed with the amount in 0G and neuron and the gas it costs before anything is signed.'),
    h('div', { class: 'form' }, h('div', {}, h('label', { for: 'tx-action' }, 'Action'), action), amtWrap, provWrap, svcWrap, h('div', {}, review)),
    out);
}

// ---------------------------------------------------------------- Providers
async function pageProviders(root) {
  root.append(h('h1', {}, 'Providers'));
  const report = h('section', { id: 'report', class: 'panel', 'aria-live': 'polite', hidden: true });
  const list = h('div', {}, h('p', { class: 'muted' }, 'Reading services from the chain and probing their health…'));
  root.append(list, report);
  const sv = await services(true);
  const rows = sv.inference.map((x) => {
    const verifyBtn = h('button', { type: 'button', class: 'primary verify', 'data-provider': x.provider }, 'Verify');
    const ackBtn = h('button', { type: 'button', class: 'ack', 'data-provider': x.provider }, 'Acknowledge');
    verifyBtn.addEventListener('click', () => runVerify(x, report, verifyBtn, false));
    ackBtn.addEventListener('click', () => runVerify(x, report, ackBtn, true));
    return h('tr', { 'data-provider': x.provider },
      h('td', {}, h('div', { class: 'mono' }, x.provider), h('div', { class: 'muted' }, x.url)),
      h('td', {}, h('strong', {}, x.model), h('div', { class: 'muted' }, x.service_type)),
      h('td', {}, `in ${x.input_price.neuron} / out ${x.output_price.neuron}`, h('div', { class: 'muted' }, 'neuron per token')),
      h('td', {}, x.verifiability || '—'),
      h('td', {}, h('div', { class: 'mono' }, short(x.tee_signer)),
        h('div', {}, x.owner_acknowledged ? h('span', { class: 'ok' }, 'owner ✓') : h('span', { class: 'muted' }, 'owner ✗'), ' · ',
          x.you_acknowledged ? h('span', { class: 'ok you-ack' }, 'you ✓') : h('span', { class: 'muted you-ack' }, 'you ✗'))),
      h('td', {}, x.health.ok ? h('span', { class: 'ok' }, `up · ${x.health.latency_ms} ms`) : h('span', { class: 'bad' }, 'down: ' + (x.health.error || ''))),
      h('td', {}, h('div', { class: 'row', style: 'margin:0' }, verifyBtn, ackBtn,
        h('a', { href: '#/chat?provider=' + encodeURIComponent(x.provider) }, 'Chat'))));
  });
  const ftRows = sv.fine_tuning.map((x) => h('tr', {},
    h('td', { class: 'mono' }, x.provider), h('td', {}, (x.models || []).join(', ')),
    h('td', {}, `${x.price_per_token.neuron} neuron/token`), h('td', {}, x.occupied ? 'busy' : 'free'),
    h('td', { class: 'mono' }, short(x.tee_signer)),
    h('td', {}, x.health.ok ? h('span', { class: 'ok' }, `up · ${x.health.latency_ms} ms`) : h('span', { class: 'bad' }, 'down'))));
  list.replaceChildren(
    h('section', { class: 'panel', 'aria-labelledby': 'inf-h' }, h('h2', { id: 'inf-h' }, 'Inference services'),
      rows.length ? table(['Provider', 'Model', 'Price', 'Verifiability', 'TEE signer', 'Health', 'Actions'], rows, { id: 'providers' })
        : h('p', { class: 'muted', id: 'providers' }, 'No inference services are registered on this chain.')),
    h('section', { class: 'panel', 'aria-labelledby': 'ft-h' }, h('h2', { id: 'ft-h' }, 'Fine-tuning services'),
      ftRows.length ? table(['Provider', 'Models', 'Price', 'State', 'TEE signer', 'Health'], ftRows)
        : h('p', { class: 'muted' }, 'No fine-tuning services are registered on this chain.')));
}

async function runVerify(x, panel, btn, acknowledge) {
  btn.disabled = true;
  panel.hidden = false;
  panel.replaceChildren(h('p', {}, h('progress', { 'aria-label': 'verifying' }), ` ${acknowledge ? 'Verifying, then acknowledging' : 'Verifying'} ${x.provider}: fresh nonce, quote, event log, signer binding…`));
  try {
    const r = await busy(acknowledge ? 'Verifying and acknowledging…' : 'Verifying the attestation…',
      () => api('POST', `/api/providers/${x.provider}/${acknowledge ? 'acknowledge' : 'verify'}`, {}));
    panel.replaceChildren(...renderReport(x, r));
    if (acknowledge && r.tx) {
      panel.prepend(h('div', { class: 'notice', id: 'ack-done' }, `Acknowledged TEE signer ${r.verification.signer} on chain (block ${r.tx.block}, tx `, h('span', { class: 'mono' }, r.tx.tx), ').'));
      servicesCache = null;
    }
  } catch (e) {
    panel.replaceChildren(h('h2', {}, 'Verification of ' + x.provider), errorBox(e, 'verify-error'));
  } finally {
    btn.disabled = false;
    panel.focus && panel.setAttribute('tabindex', '-1');
    panel.scrollIntoView({ block: 'start' });
  }
}

function renderReport(x, r) {
  const out = [h('h2', { id: 'report-h' }, 'Attestation report · ' + x.provider)];
  const rep = r.report;
  if (!rep) {
    out.push(errorBox(r.error || 'no report', 'verify-error'));
    if (r.simulated_refused) out.push(h('div', { class: 'banner-sim', role: 'alert', id: 'sim-banner' }, '!! SIMULATED TEE: refused. Start `zg web --allow-simulated` for local development only. !!'));
    return out;
  }
  if (rep.simulated) {
    out.push(h('div', { class: 'banner-sim', role: 'alert', id: 'sim-banner' },
      '!! ' + (rep.notice || 'SIMULATED — NOT A REAL TEE') + ' — accepted only because zg web runs with --allow-simulated !!'));
  }
  const pass = rep.verdict === 'pass' && r.ok;
  out.push(h('p', { class: 'verdict ' + (pass ? 'pass' : 'fail'), id: 'verdict' }, pass ? 'PASS' : 'FAIL'));
  if (r.error) out.push(errorBox(r.error, 'verify-error'));
  const v = r.verification;
  out.push(h('dl', { class: 'kv' },
    h('dt', {}, 'Verified at'), h('dd', {}, typeof rep.verified_at === 'number' ? when(rep.verified_at) : String(rep.verified_at)),
    h('dt', {}, 'TCB status'), h('dd', { id: 'tcb-status' }, rep.tcb_status || 'not computed (no Intel collateral for this evidence)'),
    rep.advisory_ids && rep.advisory_ids.length ? [h('dt', {}, 'Advisories'), h('dd', {}, rep.advisory_ids.join(', '))] : null,
    h('dt', {}, 'Quote version'), h('dd', {}, rep.quote_version == null ? '—' : String(rep.quote_version)),
    h('dt', {}, 'Bound signer'), h('dd', { class: 'mono' }, rep.signer_address || (v && v.signer) || '—'),
    v ? [h('dt', {}, 'On-chain signer'), h('dd', { class: 'mono' }, x.tee_signer),
      h('dt', {}, 'Response key'), h('dd', { class: 'mono' }, v.response_key),
      h('dt', {}, 'Nonce'), h('dd', { class: 'mono' }, v.nonce)] : null,
    h('dt', {}, 'MRTD'), h('dd', { class: 'mono' }, rep.mrtd || '—'),
    h('dt', {}, 'RTMR3'), h('dd', { class: 'mono' }, rep.rtmr3 || '—')));
  const checks = (rep.checks || []).map((c) => h('tr', { class: c.ok ? 'check-ok' : 'check-fail' },
    h('td', {}, c.ok ? h('span', { class: 'ok' }, '✓ ok') : c.required ? h('span', { class: 'bad' }, '✗ FAIL') : h('span', { class: 'muted' }, '– not met')),
    h('td', { class: 'mono' }, c.name),
    h('td', { class: 'mono' }, c.expected),
    h('td', { class: 'mono' }, c.found),
    h('td', {}, c.required ? 'required' : 'info')));
  out.push(h('h3', {}, `Checks (${(rep.checks || []).length})`),
    table(['Result', 'Check', 'Expected', 'Found', 'Counts'], checks, { id: 'checks' }));
  // GPU evidence: the GPUs the verifier covered, and the status of its gpu.* checks (listed above too).
  const gpus = rep.gpus || (rep.gpu ? [rep.gpu] : []);
  const gpuChecks = (rep.checks || []).filter((c) => c.name.startsWith('gpu'));
  const failed = gpuChecks.filter((c) => !c.ok && c.required);
  let gpuStatus;
  if (!gpus.length && !gpuChecks.some((c) => c.ok && c.name !== 'gpu.present')) gpuStatus = 'No GPU evidence verified: the GPU is not attested (CPU TEE only).';
  else if (failed.length) gpuStatus = `GPU evidence FAILED: ${failed.map((c) => c.name).join(', ')}.`;
  else gpuStatus = `GPU evidence verified: ${gpus.length} GPU(s), ${gpuChecks.filter((c) => c.ok).length} gpu checks passed${gpus.some((g) => g.simulated) ? ' (SIMULATED GPU)' : ''}.`;
  out.push(h('h3', {}, 'GPU evidence'), h('p', { id: 'gpu-status' }, gpuStatus));
  if (gpus.length) {
    out.push(table(['GPU', 'Device', 'Driver', 'VBIOS', 'Simulated'], gpus.map((g) => h('tr', {},
      h('td', {}, String(g.index ?? '')), h('td', {}, String(g.device ?? '')), h('td', {}, String(g.driver_version ?? '—')),
      h('td', {}, String(g.vbios_version ?? '—')), h('td', {}, g.simulated ? h('span', { class: 'bad' }, 'yes') : 'no'))), { id: 'gpus' }));
  }
  if (rep.allowlist_matches && rep.allowlist_matches.length) {
    out.push(h('h3', {}, 'Allow-list'), h('ul', { id: 'allowlist' }, rep.allowlist_matches.map((t) => h('li', {}, t))));
  }
  if (rep.not_verified && rep.not_verified.length) {
    out.push(h('h3', {}, 'Not established by this verification'), h('ul', {}, rep.not_verified.map((t) => h('li', {}, t))));
  }
  return out;
}

// ---------------------------------------------------------------- Chat
const chatState = { provider: null, messages: [], spent: 0n, answers: 0 };
async function pageChat(root, params) {
  root.append(h('h1', {}, 'Chat playground'));
  const sv = await services();
  const sel = h('select', { id: 'chat-provider' }, sv.inference.map((x) => h('option', { value: x.provider }, `${x.model} · ${short(x.provider)}`)));
  const pick = (addr) => {
    const o = [...sel.options].find((x) => x.value.toLowerCase() === String(addr).toLowerCase());
    if (o) sel.value = o.value;
  };
  if (params.get('provider')) pick(params.get('provider'));
  else if (chatState.provider) pick(chatState.provider);
  const model = h('input', { id: 'chat-model', type: 'text', placeholder: 'default (or a deployed adapter id)', size: 26 });
  const maxTok = h('input', { id: 'chat-max', type: 'number', min: 1, max: 4096, value: 128, style: 'width:6em' });
  const temp = h('input', { id: 'chat-temp', type: 'number', min: 0, max: 2, step: 0.1, placeholder: 'default', style: 'width:6em' });
  const log = h('div', { class: 'chatlog', id: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const input = h('textarea', { id: 'chat-input', placeholder: 'Ask something… (Ctrl+Enter sends)', 'aria-label': 'Your message' });
  const send = h('button', { id: 'chat-send', class: 'primary', type: 'button' }, 'Send');
  const cost = h('div', { id: 'chat-cost', class: 'cards' });
  const reset = h('button', { type: 'button' }, 'New conversation');
  if (!sv.inference.length) {
    root.append(h('p', { class: 'muted' }, 'No inference services are registered on this chain.'));
    return;
  }
  const refreshCost = async () => {
    try {
      const b = await api('GET', `/api/chat/${sel.value}/balance`);
      cost.replaceChildren(
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'This session'), h('div', { class: 'value', id: 'session-cost' }, `${(Number(chatState.spent) / 1e18).toFixed(12).replace(/0+$/, '').replace(/\.$/, '')} 0G`), h('div', { class: 'sub' }, `${chatState.spent} neuron · ${chatState.answers} answers`)),
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'Owed to provider (all verified receipts)'), h('div', { class: 'value' }, zg(b.owed)), h('div', { class: 'sub' }, `${b.receipts} receipts · ${neuron(b.owed)}`)),
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'Paid on chain / unsettled'), h('div', { class: 'value' }, zg(b.paid)), h('div', { class: 'sub' }, 'unsettled ' + zg(b.unsettled))),
        h('div', { class: 'card' }, h('div', { class: 'label' }, 'Sub-account'), h('div', { class: 'value' }, zg(b.sub_account)), h('div', { class: 'sub' }, neuron(b.sub_account))));
    } catch (e) { cost.replaceChildren(errorBox(e)); }
  };
  const redraw = () => {
    log.replaceChildren(...chatState.messages.map((m) => m.el || (m.el = h('div', { class: 'msg ' + m.role }, h('span', { class: 'text' }, m.content)))));
  };
  sel.addEventListener('change', () => { chatState.provider = sel.value; chatState.messages = []; redraw(); refreshCost(); });
  reset.addEventListener('click', () => { chatState.messages = []; redraw(); input.focus(); });
  const doSend = async () => {
    const text = input.value.trim();
    if (!text) return;
    chatState.provider = sel.value;
    input.value = '';
    const user = { role: 'user', content: text };
    chatState.messages.push(user);
    const textEl = h('span', { class: 'text' }, '');
    const rc = h('div', { class: 'receipt muted' }, h('progress', { 'aria-label': 'answer streaming' }), ' streaming… the answer is unverified until its receipt checks out');
    const el = h('div', { class: 'msg assistant' }, textEl, rc);
    const answer = { role: 'assistant', content: '', el, pending: true };
    chatState.messages.push(answer);
    redraw();
    send.disabled = true;
    const body = {
      messages: chatState.messages.filter((m) => !m.pending && !m.rejected).map((m) => ({ role: m.role, content: m.content })),
      max_tokens: Number(maxTok.value) || 128,
    };
    if (temp.value !== '') body.temperature = Number(temp.value);
    if (model.value.trim()) body.model = model.value.trim();
    try {
      await streamChat(sel.value, body, (t) => { answer.content += t; textEl.textContent = answer.content; log.scrollTop = log.scrollHeight; },
        (r) => {
          answer.pending = false;
          chatState.spent += BigInt(r.fee.neuron);
          chatState.answers++;
          rc.className = 'receipt verified-receipt';
          rc.replaceChildren(h('span', { class: 'ok' }, '✓ receipt verified'),
            ` · tokens ${r.prompt_tokens}+${r.completion_tokens} · fee ${r.fee.zg} 0G (${r.fee.neuron} neuron) · owed ${r.owed_after.zg} 0G · `,
            h('span', { class: 'mono', title: 'receipt key' }, 'key ' + short(r.key)),
            h('details', {}, h('summary', {}, 'receipt'), h('dl', { class: 'kv' },
              ['model', 'nonce', 'request_hash', 'response_hash', 'response_key', 'signature'].flatMap((k) => [h('dt', {}, k), h('dd', { class: 'mono' }, String(r[k]))]))));
        });
    } catch (e) {
      answer.pending = false;
      answer.rejected = true;
      el.classList.add('rejected');
      rc.className = 'receipt rejected-receipt';
      rc.replaceChildren(h('span', { class: 'bad', role: 'alert' }, '✗ not accepted: ' + e.message));
    } finally {
      send.disabled = false;
      if (answer.pending) { answer.pending = false; answer.rejected = true; }
      refreshCost();
      input.focus();
    }
  };
  send.addEventListener('click', doSend);
  input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); doSend(); } });
  root.append(
    h('section', { class: 'panel', 'aria-labelledby': 'chat-h' }, h('h2', { id: 'chat-h', class: 'sr-only' }, 'Conversation'),
      h('div', { class: 'form' },
        h('div', {}, h('label', { for: 'chat-provider' }, 'Provider'), sel),
        h('div', {}, h('label', { for: 'chat-model' }, 'Model'), model),
        h('div', {}, h('label', { for: 'chat-max' }, 'Max tokens'), maxTok),
        h('div', {}, h('label', { for: 'chat-temp' }, 'Temperature'), temp),
        h('div', {}, reset)),
      log, input, h('div', { class: 'row' }, send, h('span', { class: 'muted' }, 'Each answer is paid with a signed request and shown verified only after its TEE-signed receipt checks out against the exact bytes.'))),
    h('section', { class: 'panel', 'aria-labelledby': 'cost-h' }, h('h2', { id: 'cost-h' }, 'Running cost'), cost),
    tokensPanel(sel));
  redraw();
  refreshCost();
}

/** POSTs a chat and reads the SSE answer: onDelta(text) per token, onReceipt(receipt) at the end; throws on error. */
async function streamChat(provider, body, onDelta, onReceipt) {
  const resp = await fetch(`/api/chat/${provider}`, {
    method: 'POST', cache: 'no-store',
    headers: { authorization: 'Bearer ' + token(), 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!resp.ok) {
    let msg = resp.statusText;
    try { msg = (await resp.json()).error.message; } catch (_) { /* keep status text */ }
    throw new ApiError(msg, 'http_' + resp.status, resp.status);
  }
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = '', got = false;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const raw = buf.slice(0, i); buf = buf.slice(i + 2);
      let ev = 'message', data = '';
      for (const line of raw.split('\n')) {
        if (line.startsWith('event:')) ev = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
      const d = data ? JSON.parse(data) : {};
      if (ev === 'delta') onDelta(d.text || '');
      else if (ev === 'receipt') { got = true; onReceipt(d); }
      else if (ev === 'error') throw new ApiError(d.message, d.code, 200);
    }
  }
  if (!got) throw new ApiError('the answer ended without a verified receipt', 'no_receipt', 200);
}

function tokensPanel(sel) {
  const id = h('input', { id: 'tok-id', type: 'number', min: 0, max: 255, value: 255, style: 'width:6em' });
  const dur = h('select', { id: 'tok-duration' },
    h('option', { value: '3600' }, '1 hour'), h('option', { value: '86400', selected: true }, '24 hours'),
    h('option', { value: '604800' }, '7 days (id 0-254)'), h('option', { value: '' }, 'never (id 0-254)'));
  const out = h('div', { id: 'tok-out', 'aria-live': 'polite' });
  const get = h('button', { type: 'button', id: 'tok-get' }, 'Get secret');
  const revoke = h('button', { type: 'button', id: 'tok-revoke' }, 'Revoke this id');
  get.addEventListener('click', async () => {
    out.replaceChildren();
    try {
      const body = { token_id: Number(id.value) };
      if (dur.value) body.duration_secs = Number(dur.value);
      const r = await busy('Signing a session token…', () => api('POST', `/api/tokens/${sel.value}/secret`, body));
      const field = h('input', { type: 'text', readonly: true, value: r.secret, class: 'mono', id: 'tok-secret', size: 60, 'aria-label': 'Session secret' });
      const copy = h('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => { field.select(); try { await navigator.clipboard.writeText(r.secret); copy.textContent = 'Copied'; } catch (_) { document.execCommand && document.execCommand('copy'); } });
      out.append(h('p', {}, `Token id ${r.token_id} for ${r.provider}. Use it as Authorization: Bearer <secret> against the provider's /v1/proxy API, or with the official 0G SDK. Shown once; revoke the id to stop it.`), h('div', { class: 'row' }, field, copy));
    } catch (e) { out.append(errorBox(e)); }
  });
  revoke.addEventListener('click', async () => {
    out.replaceChildren();
    const body = h('p', {}, `Revoke session-token id ${id.value} for provider ${sel.value} on chain? Every secret with this id stops working at once.`);
    if (!(await confirmDialog('Revoke token id ' + id.value, body))) return;
    try {
      const r = await busy('Revoking on chain…', () => api('POST', `/api/tokens/${sel.value}/revoke`, { token_id: Number(id.value) }));
      out.append(h('div', { class: 'notice', id: 'tok-revoked' }, `Revoked token id ${r.token_id} (block ${r.tx.block}, tx `, h('span', { class: 'mono' }, r.tx.tx), ').'));
    } catch (e) { out.append(errorBox(e)); }
  });
  return h('section', { class: 'panel', 'aria-labelledby': 'tok-h' }, h('h2', { id: 'tok-h' }, 'Session tokens (API keys)'),
    h('p', { class: 'muted' }, 'Id 255 is ephemeral (at most 24 h); ids 0-254 are API keys you can revoke one by one.'),
    h('div', { class: 'form' }, h('div', {}, h('label', { for: 'tok-id' }, 'Token id'), id), h('div', {}, h('label', { for: 'tok-duration' }, 'Lifetime'), dur), h('div', {}, get), h('div', {}, revoke)),
    out);
}

// ---------------------------------------------------------------- Fine-tuning
async function pageFineTuning(root) {
  root.append(h('h1', {}, 'Fine-tuning'));
  const sv = await services();
  const rows = sv.fine_tuning.map((x) => h('tr', {},
    h('td', { class: 'mono' }, x.provider), h('td', {}, (x.models || []).join(', ')),
    h('td', {}, `${x.price_per_token.zg} 0G (${x.price_per_token.neuron} neuron) per token`),
    h('td', {}, x.occupied ? 'busy' : 'free')));
  root.append(h('section', { class: 'panel', 'aria-labelledby': 'ftm-h' }, h('h2', { id: 'ftm-h' }, 'Models and prices'),
    rows.length ? table(['Provider', 'Models', 'Price', 'State'], rows, { id: 'ft-services' }) : h('p', { class: 'muted', id: 'ft-services' }, 'No fine-tuning services are registered on this chain.')));
  if (window.zgFineTuning) await window.zgFineTuning(root, sv);
}

// ---------------------------------------------------------------- Provider view
let providerTimer = null;
async function pageProvider(root) {
  root.append(h('h1', {}, 'Provider view'));
  const url = h('input', { id: 'pv-url', type: 'url', size: 44, placeholder: 'http://127.0.0.1:8080/metrics', class: 'mono' });
  const set = h('button', { type: 'button', id: 'pv-set', class: 'primary' }, 'Watch');
  const body = h('div', { id: 'pv-body' });
  root.append(h('section', { class: 'panel' },
    h('p', { class: 'muted' }, "A provider's metrics endpoint (zg-provider serves /metrics next to its API): requests, tokens, earnings, unsettled fees, and its settlement history from the chain."),
    h('div', { class: 'form' }, h('div', {}, h('label', { for: 'pv-url' }, 'Metrics URL'), url), h('div', {}, set))), body);
  const load = async () => {
    if (!document.body.contains(body)) { clearInterval(providerTimer); providerTimer = null; return; }
    try {
      const v = await api('GET', '/api/provider-view');
      if (v.target && !url.value) url.value = v.target;
      body.replaceChildren(...renderProviderView(v));
    } catch (e) { body.replaceChildren(errorBox(e)); }
  };
  set.addEventListener('click', async () => {
    try { await busy('Reading the metrics…', () => api('POST', '/api/provider-view/target', { url: url.value.trim() })); await load(); } catch (e) { body.replaceChildren(errorBox(e)); }
  });
  await load();
  clearInterval(providerTimer);
  providerTimer = setInterval(load, 5000);
}

/** The sum of what the chain's VoucherSettled events paid (exact, BigInt), not the provider's own counter. */
function paidCard(list) {
  const sum = list.reduce((a, x) => a + BigInt(x.paid.neuron), 0n);
  return h('div', { class: 'card' }, h('div', { class: 'label' }, 'Paid on chain (settlements below)'),
    h('div', { class: 'value', id: 'pv-paid' }, zgShort(neuronToAmount(sum))), h('div', { class: 'sub' }, `${sum} neuron · ${list.length} settlements`));
}
function neuronToAmount(n) {
  const w = n / 10n ** 18n, f = (n % 10n ** 18n).toString().padStart(18, '0').replace(/0+$/, '');
  return { zg: f ? `${w}.${f}` : `${w}`, neuron: n.toString() };
}

function renderProviderView(v) {
  if (!v.target) return [h('p', { class: 'muted', id: 'pv-empty' }, 'No metrics endpoint yet: enter one above (or start `zg web --provider-metrics URL`).')];
  const t = v.totals;
  const out = [];
  if (v.error) out.push(errorBox('Latest sample failed: ' + v.error));
  out.push(h('div', { class: 'cards', id: 'pv-cards' },
    h('div', { class: 'card' }, h('div', { class: 'label' }, 'Requests'), h('div', { class: 'value', id: 'pv-requests' }, String(t.requests)), h('div', { class: 'sub' }, `${t.inflight} in flight`)),
    h('div', { class: 'card' }, h('div', { class: 'label' }, 'Tokens billed'), h('div', { class: 'value', id: 'pv-tokens' }, String(t.prompt_tokens + t.completion_tokens)), h('div', { class: 'sub' }, `${t.prompt_tokens} prompt + ${t.completion_tokens} completion`)),
    h('div', { class: 'card' }, h('div', { class: 'label' }, 'Earned (metered)'), h('div', { class: 'value', id: 'pv-earned' }, zg(t.earned)), h('div', { class: 'sub' }, neuron(t.earned))),
    paidCard(v.settlements || []),
    h('div', { class: 'card' }, h('div', { class: 'label' }, 'Unsettled fees'), h('div', { class: 'value', id: 'pv-unsettled' }, zg(t.unsettled)), h('div', { class: 'sub' }, neuron(t.unsettled)))));
  const pts = (k) => v.samples.map((x) => [x.at, x[k]]);
  out.push(h('section', { class: 'panel' }, h('h2', {}, 'Over time'), h('div', { class: 'charts' },
    lineChart('Requests (cumulative)', [{ name: 'requests', color: '#1d4ed8', points: pts('requests') }], 'requests'),
    lineChart('Tokens (cumulative)', [{ name: 'prompt', color: '#0f7b3f', points: pts('prompt_tokens') }, { name: 'completion', color: '#b45309', points: pts('completion_tokens') }], 'tokens'),
    lineChart('Earnings (neuron)', [{ name: 'earned', color: '#1d4ed8', points: pts('fees_neuron') }, { name: 'settled (provider)', color: '#0f7b3f', points: pts('settled_neuron') }, { name: 'unsettled', color: '#b42318', points: pts('unsettled_neuron') }], 'neuron'))));
  const routes = Object.entries(v.requests_by_route || {}).map(([k, n]) => h('tr', {}, h('td', { class: 'mono' }, k.replace('zg_provider_requests_total', '')), h('td', {}, String(n))));
  if (routes.length) out.push(h('section', { class: 'panel' }, h('h2', {}, 'Requests by route and status'), table(['Series', 'Count'], routes)));
  const st = (v.settlements || []).map((x) => h('tr', {},
    h('td', {}, when(x.at)), h('td', {}, String(x.block)), h('td', { class: 'mono' }, short(x.user)),
    h('td', {}, amountCell(x.paid)), h('td', {}, zg(x.cumulative)), h('td', {}, String(x.status)), h('td', { class: 'mono' }, short(x.tx))));
  out.push(h('section', { class: 'panel' }, h('h2', {}, 'Settlement history' + (v.provider ? ' · ' + v.provider : '')),
    st.length ? table(['When', 'Block', 'Customer', 'Paid', 'Cumulative', 'Status', 'Tx'], st, { id: 'pv-settlements' })
      : h('p', { class: 'muted', id: 'pv-settlements' }, 'No voucher settlements on chain yet.')));
  return out;
}

// ---------------------------------------------------------------- router
const pages = { account: pageAccount, providers: pageProviders, chat: pageChat, 'fine-tuning': pageFineTuning, provider: pageProvider };
async function render() {
  const m = /^#\/([a-z-]+)(?:\?(.*))?$/.exec(location.hash) || [null, 'account', ''];
  const name = pages[m[1]] ? m[1] : 'account';
  const params = new URLSearchParams(m[2] || '');
  document.querySelectorAll('nav a').forEach((a) => {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
  const root = h('div', { id: 'page-' + name, 'data-loading': 'true' });
  main().replaceChildren(root);
  document.title = `${name.replace('-', ' ')} · zg dashboard`;
  if (!token()) {
    root.append(h('h1', {}, 'Session token needed'), h('div', { class: 'error', role: 'alert', id: 'no-token' },
      'Open the link `zg web` printed in your terminal: it carries this session\'s token (http://127.0.0.1:PORT/#token=…).'));
    root.removeAttribute('data-loading');
    return;
  }
  try {
    if (!session) {
      session = await api('GET', '/api/session');
      $('#who').textContent = `${short(session.customer)} · chain ${session.chain_id}${session.allow_simulated ? ' · simulated TEEs allowed' : ''}`;
      $('#who').title = session.customer;
    }
    await pages[name](root, params);
  } catch (e) {
    root.append(errorBox(e, 'page-error'));
  } finally {
    root.removeAttribute('data-loading');
    root.setAttribute('data-ready', 'true');
  }
}
window.addEventListener('hashchange', () => { render().then(() => main().focus()); });
window.addEventListener('DOMContentLoaded', () => { if (!location.hash) history.replaceState(null, '', '#/account'); render(); });
