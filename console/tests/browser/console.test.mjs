// The Fleetgate console in Debian's Chromium (headless), driven by what a person sees: labels,
// button texts, headings, table contents (CONSOLE.md). scripts/console-check.sh starts a real
// `fleetgate serve` and passes it here:
//   CONSOLE_API        http://127.0.0.1:PORT (admin listener)
//   CONSOLE_TOKEN      its admin token
//   CONSOLE_MQTT_PORT  its provisioning listener (a real MQTT client runs PROV-V1 against it)
//   CONSOLE_OPERATIONAL_PORT  its operational listener (the provisioned device connects there)
//   CONSOLE_SCREENSHOTS  where the screenshots of the main views go
//   CHROMIUM           the browser (default /usr/bin/chromium)
// Any page error, CSP violation or unexpected console error fails the run.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import mqtt from 'mqtt';

const API = process.env.CONSOLE_API;
const ADMIN = process.env.CONSOLE_TOKEN;
const MQTT_PORT = process.env.CONSOLE_MQTT_PORT;
const OPERATIONAL_PORT = process.env.CONSOLE_OPERATIONAL_PORT;
const SHOTS = process.env.CONSOLE_SCREENSHOTS;
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
  + "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const ACCOUNT = 'web-acme';
const PASSWORD = 'provision-secret-1';

let browser;
let context;
let page;
let accountToken;
let keyed; // the request created with an activation key: {clientId, key}
let files; // a temporary directory for the imported files
let hasEndpoints; // whether the server has GET /api/v1/endpoints (API.md "Known broker endpoints")
const problems = [];

async function adminApi(method, path, body, token = ADMIN) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function shot(name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(token) {
  await page.goto(`${API}/console/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function view(name) {
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { level: 1, name }).waitFor();
}

/** Fills the Add form's required fields. */
async function fillRequest(dialog, clientId, username) {
  await dialog.getByLabel('Provision Target Client ID').fill(clientId);
  await dialog.getByLabel('Provision Username').fill(username);
  await dialog.getByLabel('Provision Password', { exact: true }).fill(PASSWORD);
  await dialog.getByLabel('Confirm Provision Password').fill(PASSWORD);
  await dialog.getByLabel('Provisioned Broker URL').fill('mqtt://127.0.0.1:1883');
}

/**
 * Presses Tab (Shift+Tab when `back`) until the focused element's label or text is `name`
 * (and, with `row`, it sits in the table row holding that text).
 */
async function tabTo(name, { back = false, row = null } = {}) {
  for (let i = 0; i < 80; i += 1) {
    await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
    const focused = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el) return { name: '', row: '' };
      return {
        name: (el.getAttribute('aria-label') || el.labels?.[0]?.textContent || el.textContent || '').trim(),
        row: el.closest('tr')?.textContent || '',
      };
    });
    if (focused.name === name && (!row || focused.row.includes(row))) return;
  }
  throw new Error(`Tab never reached "${name}"${row ? ` in the row of ${row}` : ''}`);
}

before(async () => {
  assert.ok(API && ADMIN && MQTT_PORT, 'CONSOLE_API, CONSOLE_TOKEN and CONSOLE_MQTT_PORT are set');
  files = mkdtempSync(join(tmpdir(), 'fleetgate-console-'));
  hasEndpoints = (await adminApi('GET', '/api/v1/endpoints')).status === 200;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.setDefaultTimeout(10000);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: API });
  // Injected by the browser, not by the page: the CSP does not apply to it.
  await context.addInitScript(() => document.addEventListener('securitypolicyviolation',
    (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    // The browser logs every non-2xx fetch; the API errors these tests provoke are expected.
    const url = msg.location().url || '';
    if (msg.text().startsWith('Failed to load resource') && url.includes('/api/v1/')) return;
    problems.push(`console error: ${msg.text()} (${url})`);
  });
});

after(async () => {
  await browser?.close();
  if (files) rmSync(files, { recursive: true, force: true });
});

/** Imports `lines` as the file `name` on the Provisioning view; returns the Import dialog. */
async function importFile(name, lines) {
  const file = join(files, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  await page.getByRole('button', { name: 'Import', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Import provision requests' });
  await dialog.getByLabel('Import File').setInputFiles(file);
  await dialog.getByRole('button', { name: 'Import', exact: true }).click();
  return dialog;
}

test('the console is served with its security headers, and / redirects to it', async () => {
  const res = await fetch(`${API}/`, { redirect: 'manual' });
  assert.equal(res.status, 308);
  assert.equal(res.headers.get('location'), '/console/');
  const response = await page.goto(`${API}/`);
  assert.equal(new URL(page.url()).pathname, '/console/');
  const headers = response.headers();
  assert.equal(headers['content-security-policy'], CSP);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await shot('sign-in');
});

test('an invalid token stays at sign-in with a message', async () => {
  await signIn('not-a-token');
  await page.getByText('This token is not valid.').waitFor();
  assert.equal(await page.getByRole('navigation', { name: 'Views' }).isVisible(), false);
});

test('the admin creates an account and a token, shown once and copied', async () => {
  await signIn(ADMIN);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  await view('Accounts');
  await page.getByLabel('Name', { exact: true }).fill(ACCOUNT);
  await page.getByLabel('Minimum Password Length').fill('24');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByRole('cell', { name: ACCOUNT, exact: true }).waitFor();
  await page.getByRole('row').filter({ hasText: ACCOUNT }).getByRole('button', { name: 'Create token' }).click();
  const dialog = page.getByRole('dialog', { name: `Token for ${ACCOUNT}` });
  accountToken = await dialog.getByLabel('API token').inputValue();
  assert.match(accountToken, /^fgt_/);
  await dialog.getByRole('button', { name: 'Copy' }).click();
  await dialog.getByText('Copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), accountToken);
  await shot('token-created');
  await dialog.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('cell', { name: ACCOUNT, exact: true }).first().waitFor();
  await shot('accounts');
  // Another account, which the account token must not see.
  assert.equal((await adminApi('POST', '/api/v1/accounts', { name: 'web-other' })).status, 201);
});

test('signed in with the account token, the console shows only that account', async () => {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0);
  await signIn(accountToken);
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  const options = await page.getByLabel('Account', { exact: true }).locator('option').allTextContents();
  assert.deepEqual(options, [ACCOUNT]);
  await view('Accounts');
  assert.equal(await page.getByRole('button', { name: 'Create account' }).count(), 0);
  const rows = page.locator('table').first().locator('tbody tr');
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().locator('td').first().textContent(), ACCOUNT);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.ok(!page.url().includes(accountToken));
});

test('Add with an activation key: shown once, copied', async () => {
  await view('Provisioning');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Add provision request' });
  keyed = { clientId: 'web-dev-1' };
  await fillRequest(dialog, keyed.clientId, 'web-prov-1');
  await dialog.getByLabel('Generate Activation Key').check();
  await dialog.getByLabel('Device Connection Coupling').selectOption('LOOSE');
  await shot('add-request');
  await dialog.getByRole('button', { name: 'Create' }).click();
  const created = page.getByRole('dialog', { name: 'Request created' });
  keyed.key = await created.getByLabel('Activation Key').inputValue();
  if (hasEndpoints) await created.getByText('is not a known broker endpoint').waitFor();
  assert.equal(keyed.key.length, 32);
  await created.getByRole('button', { name: 'Copy' }).click();
  await created.getByText('Copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), keyed.key);
  await shot('activation-key');
  await created.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('link', { name: keyed.clientId }).waitFor();
});

test('a 422 on bad XML shows line and column by the field', async () => {
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Add provision request' });
  await fillRequest(dialog, 'web-dev-xml', 'web-prov-xml');
  await dialog.getByLabel('Additional Device Configuration').fill(
    '<?xml version="1.0"?>\n<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0">\n  <broken\n</esf:configurations>');
  await dialog.getByRole('button', { name: 'Create' }).click();
  const box = dialog.locator('[data-field="additionalConfiguration"] .field-error');
  await box.waitFor();
  assert.match(await box.textContent(), /line \d+, column \d+/);
  assert.equal(await dialog.getByLabel('Additional Device Configuration').getAttribute('aria-invalid'), 'true');
  await shot('xml-error');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  const list = await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests?clientId=web-dev-xml`);
  assert.equal(list.body.items.length, 0);
});

/** Runs PROV-V1 (PROTOCOL.md 4) as a device with a real MQTT 5 client; resolves the reply. */
/** An MQTT 5 connection; resolves once connected. */
function connect(port, clientId, username, password) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId, username, password, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000,
    });
    client.once('connect', () => resolve(client));
    client.once('error', (e) => { client.end(true); reject(e); });
  });
}

function provision(clientId, username, key) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${MQTT_PORT}`, {
      clientId, username, password: PASSWORD, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000,
    });
    const timer = setTimeout(() => { client.end(true); reject(new Error('no PROV-V1 reply in 15 s')); }, 15000);
    client.on('error', (e) => { clearTimeout(timer); client.end(true); reject(e); });
    client.on('message', (_topic, payload) => {
      clearTimeout(timer);
      // The exchange completes with the device's PUBACK of the reply (sent after this
      // handler): stay connected a moment, as a device would.
      setTimeout(() => client.end(false, {}, () => resolve(JSON.parse(payload.toString()))), 1000);
    });
    client.on('connect', () => {
      client.subscribe(`$EDC/provision/${clientId}/PROV-V1/REPLY/#`, { qos: 1 }, (err) => {
        if (err) { reject(err); return; }
        client.publish(`$EDC/provision/${clientId}/PROV-V1/EXEC/provision`,
          JSON.stringify({ 'request.id': 'r-1', 'activation.key': key }), { qos: 1 });
      });
    });
  });
}

// ---- A device that behaves like Eclipse Kura (PROTOCOL.md 7), for the Batch Jobs test: a
// hand-written KuraPayload codec (kura/src/proto.rs: metric = 5000, body = 5001; a metric's
// name = 1, type = 2, int_value = 6, bool_value = 7, string_value = 8).

const METRIC_TYPE = { INT32: 3, BOOL: 4, STRING: 5 };

function varint(n) {
  const out = [];
  let v = n;
  while (v >= 0x80) { out.push((v % 0x80) | 0x80); v = Math.floor(v / 0x80); }
  out.push(v);
  return Buffer.from(out);
}

function fieldOf(number, wire, bytes) {
  const head = varint(number * 8 + wire);
  return wire === 2 ? Buffer.concat([head, varint(bytes.length), bytes]) : Buffer.concat([head, bytes]);
}

/** A KuraPayload of `metrics` (`[name, type, value]`) and an optional body. */
function encodeKura(metrics, body) {
  const parts = metrics.map(([name, type, value]) => {
    const v = type === METRIC_TYPE.STRING ? fieldOf(8, 2, Buffer.from(value))
      : fieldOf(type === METRIC_TYPE.BOOL ? 7 : 6, 0, varint(Number(value)));
    return fieldOf(5000, 2, Buffer.concat([fieldOf(1, 2, Buffer.from(name)), fieldOf(2, 0, varint(type)), v]));
  });
  if (body !== undefined) parts.push(fieldOf(5001, 2, Buffer.from(body)));
  return Buffer.concat(parts);
}

/** The fields of a protobuf message: `[[number, value]]` (varints as numbers, the rest as bytes). */
function fields(buf) {
  const out = [];
  let at = 0;
  const readVarint = () => {
    let n = 0;
    for (let scale = 1; ; scale *= 0x80) {
      const b = buf[at];
      at += 1;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
    }
  };
  while (at < buf.length) {
    const tag = readVarint();
    const wire = tag % 8;
    const number = Math.floor(tag / 8);
    if (wire === 0) out.push([number, readVarint()]);
    else if (wire === 1 || wire === 5) { const len = wire === 1 ? 8 : 4; out.push([number, buf.subarray(at, at + len)]); at += len; } else if (wire === 2) {
      const len = readVarint();
      out.push([number, buf.subarray(at, at + len)]);
      at += len;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

/** A KuraPayload's STRING metrics by name, and its body. */
function decodeKura(buf) {
  const strings = {};
  let body = null;
  for (const [number, value] of fields(buf)) {
    if (number === 5001) body = value.toString();
    if (number !== 5000) continue;
    const metric = Object.fromEntries(fields(value));
    if (metric[8] !== undefined) strings[metric[1].toString()] = metric[8].toString();
  }
  return { strings, body };
}

/**
 * Connects as Kura does (operational credentials), subscribes to its `$EDC` tree, publishes its
 * BIRTH, and answers CONF-V1 PUT configurations and CMD-V1 EXEC command with 200 on
 * `$EDC/ACCOUNT/{requester.client.id}/{APP}/REPLY/{request.id}`. Resolves `{client, seen}`.
 */
async function kuraDevice(clientId, username, password) {
  const client = await connect(OPERATIONAL_PORT, clientId, username, password);
  const prefix = `$EDC/${ACCOUNT}/${clientId}/`;
  const seen = [];
  client.on('message', (topic, payload) => {
    if (!topic.startsWith(prefix)) return;
    const [app, method, ...resources] = topic.slice(prefix.length).split('/');
    const { strings, body } = decodeKura(payload);
    const id = strings['request.id'];
    const requester = strings['requester.client.id'];
    if (!id || !requester) return;
    seen.push({ app, method, resources, strings, body });
    const reply = [['response.code', METRIC_TYPE.INT32, 200]];
    if (app === 'CMD-V1') {
      const argv = [strings['command.command']];
      for (let i = 0; strings[`command.argument${i}`] !== undefined; i += 1) argv.push(strings[`command.argument${i}`]);
      reply.push(['command.exit.code', METRIC_TYPE.INT32, 0], ['command.stdout', METRIC_TYPE.STRING, argv.join(' ')],
        ['command.stderr', METRIC_TYPE.STRING, ''], ['command.timedout', METRIC_TYPE.BOOL, 0]);
    } else if (!(app === 'CONF-V1' && method === 'PUT')) reply[0][2] = 404;
    client.publish(`$EDC/${ACCOUNT}/${requester}/${app}/REPLY/${id}`, encodeKura(reply), { qos: 0 });
  });
  await client.subscribeAsync(`${prefix}#`, { qos: 1 });
  await client.publishAsync(`${prefix}MQTT/BIRTH`, encodeKura([
    ['display_name', METRIC_TYPE.STRING, clientId], ['kura_version', METRIC_TYPE.STRING, '5.4.0'],
    ['application_ids', METRIC_TYPE.STRING, 'CONF-V1,CMD-V1']]), { qos: 1 });
  return { client, seen };
}

/** Polls the request of `clientId` until COMPLETED (the exchange ends after the reply's PUBACK). */
async function completed(clientId) {
  let status;
  for (let i = 0; i < 50 && status !== 'COMPLETED'; i += 1) {
    await new Promise((r) => { setTimeout(r, 200); });
    status = (await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests?clientId=${clientId}`)).body.items[0].status;
  }
  assert.equal(status, 'COMPLETED', `the provision request of ${clientId}`);
}

test('a provisioning exchange appears in Executions, with its log under Show Log', async () => {
  const reply = await provision(keyed.clientId, 'web-prov-1', keyed.key);
  assert.equal(reply['response.code'], 200, JSON.stringify(reply));
  keyed.reply = reply;
  // The request completes once the device's PUBACK of the reply is in (and the linger ends).
  let status;
  for (let i = 0; i < 50 && status !== 'COMPLETED'; i += 1) {
    await new Promise((r) => { setTimeout(r, 200); });
    status = (await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests?clientId=${keyed.clientId}`)).body.items[0].status;
  }
  if (status !== 'COMPLETED') {
    const base = `/api/v1/accounts/${ACCOUNT}/provision-requests/${(await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests?clientId=${keyed.clientId}`)).body.items[0].id}/executions`;
    const runs = (await adminApi('GET', base)).body.items;
    const logs = await Promise.all(runs.map(async (e) => (await adminApi('GET', `${base}/${e.id}`)).body.log));
    assert.fail(`request ${status}: ${JSON.stringify(logs)}`);
  }
  await page.getByRole('link', { name: keyed.clientId }).click();
  await page.getByRole('heading', { name: `Request ${keyed.clientId}` }).waitFor();
  await page.getByText('COMPLETED', { exact: true }).waitFor();
  await shot('request-details');
  await page.getByRole('tab', { name: 'Configuration preview' }).click();
  await page.getByText('MqttDataTransport').first().waitFor();
  await page.getByRole('tab', { name: 'Executions' }).click();
  await page.getByRole('cell', { name: 'COMPLETED' }).waitFor();
  await page.getByRole('button', { name: 'Show Log', exact: true }).click();
  const log = page.getByRole('dialog', { name: /^Log of execution/ });
  const lines = log.locator('tbody tr');
  await lines.first().waitFor();
  assert.ok(await lines.count() >= 2, 'the log has its steps');
  const text = await log.textContent();
  assert.ok(!text.includes(PASSWORD), 'no secret in the log');
  await shot('execution-log');
  await page.keyboard.press('Escape');
  await log.waitFor({ state: 'detached' });
  await shot('executions');
});

test('Import of a CSV with one bad row shows the row errors and creates nothing', async () => {
  await view('Provisioning');
  const dialog = await importFile('requests.csv', ['clientId,provisionUsername,provisionPassword,brokerUrl',
    `web-bulk-1,web-bulk-prov-1,${PASSWORD},mqtt://127.0.0.1:1883`,
    `web-bulk-2,web-bulk-prov-2,${PASSWORD},ftp://nope`,
    `web-bulk-3,web-bulk-prov-3,${PASSWORD},mqtt://127.0.0.1:1883`]);
  await dialog.getByText('Nothing was created').waitFor();
  const row = dialog.locator('tbody tr');
  assert.equal(await row.count(), 1);
  const cells = await row.first().locator('td').allTextContents();
  assert.deepEqual(cells.slice(0, 3), ['2', '3', 'brokerUrl']);
  await shot('import-errors');
  const list = await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests`);
  assert.deepEqual(list.body.items.map((r) => r.clientId).filter((c) => c.startsWith('web-bulk')), []);
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
});

test('Import of a JSON-lines file creates every row', async () => {
  const dialog = await importFile('requests.jsonl', [1, 2].map((i) => JSON.stringify({
    clientId: `web-jsonl-${i}`, provisionUsername: `web-jsonl-prov-${i}`, provisionPassword: PASSWORD,
    brokerUrl: 'mqtt://127.0.0.1:1883', reserveUser: false,
  })));
  await dialog.getByText('Created 2 provision requests.').waitFor();
  await dialog.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('link', { name: 'web-jsonl-2' }).waitFor();
});

test('a request is added and deleted with the keyboard only', async () => {
  await view('Provisioning');
  await page.getByRole('heading', { level: 1, name: 'Provisioning' }).focus();
  await tabTo('Add');
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', { name: 'Add provision request' });
  await dialog.waitFor();
  // The dialog takes focus on its first field.
  const typeInto = async (label, text) => {
    await tabTo(label);
    await page.keyboard.type(text);
  };
  const focusedLabel = () => page.evaluate(() => document.activeElement?.labels?.[0]?.textContent);
  assert.equal(await focusedLabel(), 'Provision Target Client ID');
  await page.keyboard.type('web-keyboard');
  await page.keyboard.press('Tab');
  await page.keyboard.type('web-keyboard-prov');
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Tab');
  await page.keyboard.type(PASSWORD);
  await typeInto('Provisioned Broker URL', 'mqtt://127.0.0.1:1883');
  assert.equal(await focusedLabel(), 'Provisioned Broker URL');
  await page.keyboard.press('Enter');
  const created = page.getByRole('dialog', { name: 'Request created' });
  await created.waitFor();
  await page.keyboard.press('Escape');
  await created.waitFor({ state: 'detached' });
  await page.getByRole('link', { name: 'web-keyboard' }).waitFor();
  await page.getByRole('heading', { level: 1, name: 'Provisioning' }).focus();
  await tabTo('Delete', { row: 'web-keyboard' });
  await page.keyboard.press('Enter');
  const confirm = page.getByRole('dialog', { name: 'Delete provision request' });
  await confirm.waitFor();
  await tabTo('Delete', { back: true });
  await page.keyboard.press('Enter');
  await page.getByRole('link', { name: 'web-keyboard' }).waitFor({ state: 'detached' });
  const list = await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/provision-requests?clientId=web-keyboard`);
  assert.equal(list.body.items.length, 0);
  await shot('provisioning');
});

test('Edit is offered only while CREATED, and saves', async () => {
  await view('Provisioning');
  const done = page.getByRole('row').filter({ hasText: keyed.clientId });
  assert.equal(await done.getByRole('button', { name: 'Edit' }).count(), 0, 'no Edit once COMPLETED');
  await page.getByRole('row').filter({ hasText: 'web-jsonl-1' }).getByRole('button', { name: 'Edit' }).click();
  const dialog = page.getByRole('dialog', { name: 'Edit request web-jsonl-1' });
  assert.equal(await dialog.getByLabel('Provision Target Client ID').inputValue(), 'web-jsonl-1');
  await dialog.getByLabel('Provisioned Broker URL').fill('mqtts://edited.example:8883');
  await dialog.getByRole('button', { name: 'Save' }).click();
  // The passwords are never shown, so they are required again.
  await dialog.locator('[data-field="provisionPassword"] .field-error').waitFor();
  await dialog.getByLabel('Provision Password', { exact: true }).fill(PASSWORD);
  await dialog.getByLabel('Confirm Provision Password').fill(PASSWORD);
  await dialog.getByRole('button', { name: 'Save' }).click();
  const saved = page.getByRole('dialog', { name: 'Request saved' });
  await saved.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('cell', { name: 'mqtts://edited.example:8883' }).waitFor();
});

test('a long list is paged with Next page, and filters by status and client ID', async () => {
  const requests = Array.from({ length: 55 }, (_, i) => ({
    clientId: `web-page-${String(i).padStart(2, '0')}`, provisionUsername: 'web-page-prov',
    provisionPassword: PASSWORD, confirmProvisionPassword: PASSWORD, brokerUrl: 'mqtt://127.0.0.1:1883', reserveUser: false,
  }));
  const made = await adminApi('POST', `/api/v1/accounts/${ACCOUNT}/provision-requests/bulk`, { requests });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  await view('Provisioning');
  const rows = page.locator('tbody tr');
  await page.getByText('Page 1').waitFor();
  assert.equal(await rows.count(), 50);
  await page.getByRole('button', { name: 'Next page' }).click();
  await page.getByText('Page 2').waitFor();
  assert.ok(await rows.count() >= 5);
  assert.equal(await page.getByRole('button', { name: 'Next page' }).count(), 0);
  await page.getByRole('button', { name: 'Previous page' }).click();
  await page.getByText('Page 1').waitFor();
  await page.getByLabel('Status').selectOption('COMPLETED');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByRole('link', { name: 'web-page-00' }).waitFor({ state: 'detached' });
  assert.deepEqual(await page.locator('tbody tr td:first-child').allTextContents(), [keyed.clientId]);
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Client ID').fill('web-page-07');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByRole('link', { name: keyed.clientId }).waitFor({ state: 'detached' });
  assert.deepEqual(await page.locator('tbody tr td:first-child').allTextContents(), ['web-page-07']);
});

test('Devices, Users and the Overview show the enrolled device', async () => {
  await view('Devices');
  await page.getByRole('cell', { name: keyed.clientId, exact: true }).waitFor();
  // The enrolled device connects with its operational credentials: Configuration and Run
  // command appear; it has sent no BIRTH, so the API's 409 (not ready) is shown.
  const device = await connect(OPERATIONAL_PORT, keyed.clientId, keyed.reply.username, keyed.reply.password);
  try {
    await view('Devices');
    const row = page.getByRole('row').filter({ hasText: keyed.clientId });
    await row.getByText('CONNECTED', { exact: true }).waitFor();
    await row.getByRole('button', { name: 'Run command' }).click();
    const run = page.getByRole('dialog', { name: `Run command on ${keyed.clientId}` });
    await run.getByLabel('Command').fill('uname');
    await run.getByLabel('Arguments').fill('-a');
    await run.getByRole('button', { name: 'Run', exact: true }).click();
    await run.locator('[data-field="clientId"] .field-error, .form-message .message.error').first().waitFor();
    assert.match(await run.textContent(), /not (connected|ready)|ready/i);
    await page.keyboard.press('Escape');
    await row.getByRole('button', { name: 'Configuration' }).click();
    const conf = page.getByRole('dialog', { name: `Configuration of ${keyed.clientId}` });
    await conf.getByRole('alert').waitFor();
    await page.keyboard.press('Escape');
    await conf.waitFor({ state: 'detached' });
  } finally {
    await new Promise((r) => { device.end(false, {}, r); });
  }
  await page.getByRole('button', { name: 'Add device' }).click();
  const add = page.getByRole('dialog', { name: 'Add device' });
  await add.getByLabel('Client ID').fill('web-registry-1');
  await add.getByLabel('Display Name').fill('Pump 1');
  await add.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('cell', { name: 'web-registry-1', exact: true }).waitFor();
  await shot('devices');
  await page.getByRole('row').filter({ hasText: 'web-registry-1' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete device' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('cell', { name: 'web-registry-1', exact: true }).waitFor({ state: 'detached' });

  await view('Users');
  await page.getByRole('cell', { name: `${keyed.clientId}@${ACCOUNT}`, exact: true }).first().waitFor();
  await page.getByLabel('Name', { exact: true }).fill('dashboard');
  await page.getByLabel('data:read').check();
  await page.getByRole('button', { name: 'Create user' }).click();
  const made = page.getByRole('dialog', { name: `User dashboard@${ACCOUNT} created` });
  const password = await made.getByLabel('Password').inputValue();
  assert.ok(password.length >= 12);
  await made.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('cell', { name: `dashboard@${ACCOUNT}`, exact: true }).waitFor();
  await page.getByRole('cell', { name: 'broker:connect, data:read' }).waitFor();
  await shot('users');
  const dashboard = () => page.getByRole('row').filter({ hasText: `dashboard@${ACCOUNT}` });
  await dashboard().getByRole('button', { name: 'Change permissions' }).click();
  const perms = page.getByRole('dialog', { name: `Permissions of dashboard@${ACCOUNT}` });
  await perms.getByLabel('device:read').check();
  await perms.getByRole('button', { name: 'Save permissions' }).click();
  await page.getByRole('cell', { name: 'broker:connect, data:read, device:read' }).waitFor();
  await dashboard().getByRole('button', { name: 'Disable' }).click();
  await dashboard().getByRole('button', { name: 'Enable' }).waitFor();
  await dashboard().getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete user' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('cell', { name: `dashboard@${ACCOUNT}`, exact: true }).waitFor({ state: 'detached' });

  await view('Overview');
  await page.getByText('Enrollments').waitFor();
  await shot('overview');
});

test('Batch Jobs: a Device Connect job is created in the form, runs on a Kura-like device, and is deleted', async () => {
  const cid = 'web-job-1';
  const name = 'enable clock';
  const clockXml = '<?xml version="1.0" encoding="UTF-8"?>\n<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0">\n'
    + '  <esf:configuration pid="org.eclipse.kura.clock.ClockService"><esf:properties>\n'
    + '    <esf:property array="false" encrypted="false" name="clock.ntp.host" type="String"><esf:value>pool.ntp.org</esf:value></esf:property>\n'
    + '  </esf:properties></esf:configuration>\n</esf:configurations>';
  // The seed's order: the device in the registry first, then the job, then its provisioning.
  await view('Devices');
  await page.getByRole('button', { name: 'Add device' }).click();
  const add = page.getByRole('dialog', { name: 'Add device' });
  await add.getByLabel('Client ID').fill(cid);
  await add.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('cell', { name: cid, exact: true }).waitFor();

  await view('Batch Jobs');
  await page.getByRole('button', { name: 'Create job' }).click();
  const dialog = page.getByRole('dialog', { name: 'Create job' });
  await dialog.getByLabel('Name', { exact: true }).fill(name);
  await dialog.getByLabel('Filter devices').fill('web-job');
  await dialog.getByRole('button', { name: 'Select all' }).click();
  await dialog.getByText(/^1 of \d+ devices selected\.$/).waitFor();
  assert.equal(await dialog.getByLabel(cid, { exact: true }).isChecked(), true);
  await dialog.getByRole('button', { name: 'Add configuration step' }).click();
  await dialog.getByRole('button', { name: 'Add command step' }).click();
  const step = (n, kind) => dialog.getByRole('group', { name: `Step ${n}: ${kind}` });
  // Reordering by keyboard renumbers the steps and keeps the focus on the moved step's
  // buttons; the command goes back to second place.
  const focused = () => page.evaluate(() => `${document.activeElement.closest('fieldset')?.querySelector('legend')?.textContent}: ${document.activeElement.textContent}`);
  await step(2, 'Command').getByRole('button', { name: 'Move up' }).focus();
  await page.keyboard.press('Enter');
  await step(1, 'Command').waitFor();
  assert.equal(await focused(), 'Step 1: Command: Move down');
  await page.keyboard.press('Enter');
  await step(2, 'Command').waitFor();
  assert.equal(await focused(), 'Step 2: Command: Move up');
  await step(2, 'Command').getByLabel('Command', { exact: true }).fill('echo');
  await step(2, 'Command').getByLabel('Arguments').fill('hello kura');
  await step(1, 'Configuration').getByLabel('Configuration XML').fill(clockXml);
  await dialog.getByLabel('Name', { exact: true }).focus();
  await shot('create-job');

  // A bad cron: the error by the cron field.
  await dialog.getByLabel('Cron', { exact: true }).check();
  await dialog.getByLabel('Cron Expression').fill('61 * * * *');
  await dialog.getByRole('button', { name: 'Create job' }).click();
  const cronError = dialog.locator('[data-field="schedule.cron"] .field-error');
  await cronError.waitFor();
  assert.ok((await cronError.textContent()).length > 0);
  assert.equal(await dialog.getByLabel('Cron Expression').getAttribute('aria-invalid'), 'true');
  // Months have no fixed length: an interval of P1M is refused by its Every field.
  await dialog.getByLabel('Interval').check();
  await dialog.getByLabel('Every').fill('P1M');
  await dialog.getByRole('button', { name: 'Create job' }).click();
  await dialog.locator('[data-field="schedule.every"] .field-error').waitFor();
  assert.equal(await cronError.isVisible(), false);
  // A request step's metrics must be a JSON object; Remove takes the step out again.
  await dialog.getByRole('button', { name: 'Add request step' }).click();
  await step(3, 'Request').getByLabel('App').fill('DEPLOY-V2');
  await step(3, 'Request').getByLabel('Metrics').fill('{"dp.uri": ');
  await dialog.getByRole('button', { name: 'Create job' }).click();
  await step(3, 'Request').locator('[data-field="steps[2].metrics"] .field-error').waitFor();
  await step(3, 'Request').getByRole('button', { name: 'Remove' }).click();
  assert.equal(await dialog.getByRole('group', { name: /^Step \d/ }).count(), 2);

  // Bad XML in step 1: line and column by that step's editor.
  await dialog.getByLabel('Device Connect').check();
  await step(1, 'Configuration').getByLabel('Configuration XML').fill(
    '<?xml version="1.0"?>\n<esf:configurations xmlns:esf="http://eurotech.com/esf/2.0">\n  <broken\n</esf:configurations>');
  await dialog.getByRole('button', { name: 'Create job' }).click();
  const xmlError = step(1, 'Configuration').locator('[data-field="steps[0].configuration"] .field-error');
  await xmlError.waitFor();
  assert.match(await xmlError.textContent(), /line \d+, column \d+/);
  assert.equal(await cronError.isVisible(), false);
  await shot('job-xml-error');
  assert.deepEqual((await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/jobs`)).body.items, []);

  await step(1, 'Configuration').getByLabel('Configuration XML').fill(clockXml);
  await dialog.getByLabel('Max Attempts').fill('2');
  await dialog.getByLabel('Step Timeout').fill('10');
  await dialog.getByRole('button', { name: 'Create job' }).click();
  await dialog.waitFor({ state: 'detached' });
  const row = page.getByRole('row').filter({ hasText: name });
  await row.waitFor();
  const headers = await page.locator('thead th').allTextContents();
  const cells = await row.locator('td').allTextContents();
  assert.equal(cells[headers.indexOf('Trigger')], 'Device Connect');
  assert.equal(cells[headers.indexOf('Targets')], '1');
  assert.equal(cells[headers.indexOf('PENDING')], '1');
  assert.equal(cells[headers.indexOf('COMPLETED')], '0');
  await shot('jobs');

  await row.getByRole('link', { name }).click();
  await page.getByRole('heading', { level: 1, name: `Job ${name}` }).waitFor();
  const executions = page.getByRole('table', { name: 'Executions' });
  const target = executions.getByRole('row').filter({ hasText: cid });
  await target.getByText('PENDING', { exact: true }).waitFor();

  // The device enrolls (a provision request and PROV-V1), then connects like Kura: the job
  // runs on its readiness.
  const made = await adminApi('POST', `/api/v1/accounts/${ACCOUNT}/provision-requests`, {
    clientId: cid, provisionUsername: 'web-job-prov', provisionPassword: PASSWORD, confirmProvisionPassword: PASSWORD,
    brokerUrl: 'mqtt://127.0.0.1:1883',
  });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const reply = await provision(cid, 'web-job-prov');
  assert.equal(reply['response.code'], 200, JSON.stringify(reply));
  await completed(cid);
  const device = await kuraDevice(cid, reply.username, reply.password);
  try {
    for (let i = 0; i < 50; i += 1) {
      await page.getByRole('button', { name: 'Refresh' }).click();
      await page.getByRole('heading', { level: 2, name: 'Targets', exact: true }).waitFor();
      if (await target.getByText(/^(COMPLETED|FAILED)$/).count()) break;
      await new Promise((r) => { setTimeout(r, 200); });
    }
    await target.getByText('COMPLETED', { exact: true }).waitFor();
    assert.deepEqual(device.seen.map((s) => `${s.app} ${s.method} ${s.resources.join('/')}`),
      ['CONF-V1 PUT configurations', 'CMD-V1 EXEC command']);
    assert.match(device.seen[0].body, /clock\.ntp\.host/);
    const counts = await page.locator('.tiles li').allTextContents();
    assert.ok(counts.includes('1COMPLETED'), counts.join(' '));
    await shot('job-details');
    await target.getByRole('button', { name: 'Show Log' }).click();
    const log = page.getByRole('dialog', { name: `Log of ${cid}, attempt 1` });
    await log.locator('tbody tr').first().waitFor();
    const text = await log.textContent();
    assert.match(text, /CONF-V1 PUT configurations answered 200/);
    assert.match(text, /CMD-V1 EXEC command answered 200, exit code 0, stdout: "echo hello kura"/);
    assert.ok(!text.includes('pool.ntp.org'), 'no configuration content in the log');
    await shot('job-log');
    await page.keyboard.press('Escape');
    await log.waitFor({ state: 'detached' });
  } finally {
    await device.client.endAsync();
  }

  // Targets: add the enrolled device from the registry, then remove it again.
  const targets = page.getByRole('table', { name: 'Targets' });
  await page.getByRole('button', { name: 'Add targets' }).click();
  const adding = page.getByRole('dialog', { name: `Add targets to ${name}` });
  assert.equal(await adding.getByLabel(cid, { exact: true }).count(), 0, 'a target is not offered again');
  await adding.getByLabel(keyed.clientId, { exact: true }).check();
  await adding.getByRole('button', { name: 'Add targets' }).click();
  await adding.waitFor({ state: 'detached' });
  await targets.getByRole('row').filter({ hasText: keyed.clientId }).getByText('PENDING', { exact: true }).waitFor();
  await targets.getByRole('row').filter({ hasText: keyed.clientId }).getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('dialog', { name: 'Remove target' }).getByRole('button', { name: 'Remove' }).click();
  await targets.getByRole('cell', { name: keyed.clientId, exact: true }).waitFor({ state: 'detached' });
  assert.deepEqual((await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/jobs`)).body.items[0].targets, [cid]);

  // Delete asks first; Cancel keeps the job.
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete job' }).getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/jobs`)).body.items.length, 1);
  await page.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete job' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('heading', { level: 1, name: 'Batch Jobs' }).waitFor();
  await page.getByText('No jobs yet').waitFor();
  assert.deepEqual((await adminApi('GET', `/api/v1/accounts/${ACCOUNT}/jobs`)).body.items, []);
});

test('the Endpoints view and the Add form\'s drop-down follow the API\'s endpoints route', async () => {
  const has = hasEndpoints;
  const link = page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Endpoints' });
  assert.equal(await link.isVisible(), has);
  const url = 'mqtts://mqtt.eu.example:8883';
  if (has) {
    const made = await adminApi('POST', '/api/v1/endpoints', { name: 'web-eu', url, kind: 'rabbitmq' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    await page.reload();
    await view('Endpoints');
    await page.getByRole('cell', { name: url, exact: true }).waitFor();
  }
  await view('Provisioning');
  await page.getByRole('button', { name: 'Add', exact: true }).click();
  const dialog = page.getByRole('dialog', { name: 'Add provision request' });
  // Free entry always; the known endpoints offered when the server has them.
  await dialog.getByLabel('Provisioned Broker URL').fill('mqtt://free.example:1883');
  assert.equal(await dialog.locator(`datalist option[value="${url}"]`).count(), has ? 1 : 0);
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
});

test('a revoked token returns to sign-in with a message', async () => {
  const id = accountToken.split('_')[1];
  assert.equal((await adminApi('DELETE', `/api/v1/accounts/${ACCOUNT}/tokens/${id}`)).status, 204);
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Provisioning' }).click();
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByText('The token was refused').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('fleetgate.token')), null);
});

test('the admin adds and deletes a known endpoint', async (t) => {
  if (!hasEndpoints) { t.skip('the server has no endpoints route'); return; }
  await signIn(ADMIN);
  await view('Endpoints');
  await page.getByLabel('Name', { exact: true }).fill('web-us');
  await page.getByLabel('URL', { exact: true }).fill('mqtts://mqtt.us.example:8883');
  await page.getByLabel('Kind').selectOption('emqx');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByRole('cell', { name: 'mqtts://mqtt.us.example:8883' }).waitFor();
  await shot('endpoints');
  assert.equal(await page.getByRole('row').filter({ hasText: 'fleetgate' }).getByRole('button', { name: 'Delete' }).count(), 0);
  await page.getByRole('row').filter({ hasText: 'web-us' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog', { name: 'Delete endpoint' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('cell', { name: 'mqtts://mqtt.us.example:8883' }).waitFor({ state: 'detached' });
});

test('no page error, CSP violation or console error happened', () => {
  assert.deepEqual(problems, []);
});
