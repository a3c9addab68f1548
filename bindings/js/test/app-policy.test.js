// An application's Vault token against a real OpenBao, set up by tests/js_package.rs: a token with
// the policy `rotor policy app` prints alone, and one with the seed's plain `read` on the key path, open wallets
// of every KEK version after rotations, and neither can change a KEK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { Keyring, RotorCodecError, inspect, loadKeks } from '../dist/index.js';

const { ROTOR_JS_FIXTURE, ROTOR_APP_POLICY_FILE, ROTOR_BIN, VAULT_ADDR, VAULT_TOKEN } = process.env;
if (!ROTOR_JS_FIXTURE || !ROTOR_APP_POLICY_FILE || !ROTOR_BIN || !VAULT_ADDR || !VAULT_TOKEN) {
  throw new Error(
    'this file needs the OpenBao and wallets that tests/js_package.rs sets up: run `cargo test --release --test js_package`',
  );
}
const fixture = JSON.parse(readFileSync(ROTOR_JS_FIXTURE, 'utf8'));
const plaintextOf = (wallet) => Buffer.from(wallet.plaintext_base64, 'base64');
const SEED_ERA = 'seed-era@IBNMSP';
const KEY = 'secret/data/ibn/encryption-key';
const ARCHIVE = 'secret/data/ibn/encryption-key-archive';
const STAGED = 'secret/data/ibn/encryption-key-staged';

/** Calls Vault's HTTP API with `token`; returns the status and the JSON body, if any. */
async function vault(token, method, path, body) {
  const response = await fetch(`${VAULT_ADDR}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** As root: installs `policy` under `name` and returns a token that carries it alone. */
async function tokenWith(name, policy) {
  const written = await vault(VAULT_TOKEN, 'PUT', `sys/policies/acl/${name}`, { policy });
  assert.equal(written.status, 204, JSON.stringify(written.body));
  const created = await vault(VAULT_TOKEN, 'POST', 'auth/token/create', {
    policies: [name],
    no_default_policy: true,
    ttl: '10m',
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  return created.body.auth.client_token;
}

const appToken = await tokenWith(
  'rotor-app',
  readFileSync(ROTOR_APP_POLICY_FILE, 'utf8'),
);
// What the seed's application had: `read` on the key path, nothing else.
const seedToken = await tokenWith('seed-app', `path "${KEY}" { capabilities = ["read"] }`);

/** Every fixture wallet but the seed-era one opens with `keyring`, in every version. */
function opensEveryRotorWallet(keyring) {
  const versions = new Set();
  for (const wallet of fixture.wallets.filter((w) => w.id !== SEED_ERA)) {
    versions.add(inspect(wallet.ciphertext));
    assert.deepEqual(Buffer.from(keyring.open(wallet.id, wallet.ciphertext)), plaintextOf(wallet), wallet.id);
  }
  assert.deepEqual([...versions].sort(), [0, 1, 2, 3], 'legacy and envelopes of v1 to v3');
}

test('the app policy alone: every KEK version loads and every rotor wallet opens', async () => {
  const keyring = await Keyring.fromVault({ token: appToken });
  assert.equal(keyring.currentVersion, fixture.current);
  assert.deepEqual(keyring.versions, [1, 2, 3]);
  opensEveryRotorWallet(keyring);

  // The seed script's own archives need `list`, which the policy leaves out: a legacy wallet
  // under one of them says so instead of failing silently.
  const seedEra = fixture.wallets.find((w) => w.id === SEED_ERA && inspect(w.ciphertext) === 0);
  assert.throws(
    () => keyring.open(seedEra.id, seedEra.ciphertext),
    (error) =>
      error instanceof RotorCodecError &&
      /seed script's archives were not read/.test(error.message) &&
      /`list` on secret\/metadata\/ibn\/encryption-key-archive\//.test(error.message),
  );
  const keks = await loadKeks({ token: appToken });
  assert.deepEqual(keks.seedArchives, []);
  assert.equal(keks.unavailable.size, 0);
});

test('the app policy alone: Vault refuses every write, listing and other secrets', async () => {
  const before = await vault(VAULT_TOKEN, 'GET', KEY);
  const kek = { data: { key: 'ab'.repeat(32) } };
  const refused = [
    ['POST', KEY, kek],
    ['PUT', KEY, { ...kek, options: { cas: before.body.data.metadata.version } }],
    ['POST', `${ARCHIVE}/v9`, kek],
    ['POST', `${ARCHIVE}/v1`, kek],
    ['DELETE', KEY],
    ['POST', 'secret/destroy/ibn/encryption-key', { versions: [1] }],
    ['DELETE', 'secret/metadata/ibn/encryption-key'],
    ['LIST', 'secret/metadata/ibn/encryption-key-archive'],
    ['GET', 'secret/metadata/ibn/encryption-key'],
    ['GET', 'secret/data/ibn/other-secret'],
    ['PUT', 'sys/policies/acl/rotor-app', { policy: 'path "*" { capabilities = ["sudo"] }' }],
  ];
  for (const [method, path, body] of refused) {
    const answer = await vault(appToken, method, path, body);
    assert.equal(answer.status, 403, `${method} ${path} answered ${answer.status}`);
  }
  const after = await vault(VAULT_TOKEN, 'GET', KEY);
  assert.deepEqual(after.body.data, before.body.data, 'the current KEK did not change');
});

test("the seed's plain read token on the key path: every version comes from the KV history", async () => {
  const keyring = await Keyring.fromVault({ token: seedToken, seedArchives: false });
  assert.deepEqual(keyring.versions, [1, 2, 3]);
  opensEveryRotorWallet(keyring);
});

test('seedArchives: false asks Vault for no listing', async () => {
  const urls = [];
  const watching = (url, init) => {
    urls.push(String(url));
    return fetch(url, init);
  };
  await loadKeks({ token: appToken, seedArchives: false, fetch: watching });
  assert.ok(urls.length >= 3, urls.join('\n'));
  assert.ok(!urls.some((url) => url.includes('list=true') || url.includes('/metadata/')), urls.join('\n'));
});

// Last: changes Vault for good. KV keeps 10 versions by default; a KEK that fell out of the
// history is read from rotor's archive, which the seed's plain token may not read.
test('a version gone from the KV history: read from the archive, or named with the fix', async () => {
  const destroyed = await vault(VAULT_TOKEN, 'POST', 'secret/destroy/ibn/encryption-key', { versions: [1] });
  assert.equal(destroyed.status, 204, JSON.stringify(destroyed.body));
  const v1 = fixture.wallets.find((w) => w.id !== SEED_ERA && inspect(w.ciphertext) === 1);

  const app = await Keyring.fromVault({ token: appToken, seedArchives: false });
  assert.deepEqual(app.versions, [1, 2, 3]);
  opensEveryRotorWallet(app);

  const seed = await Keyring.fromVault({ token: seedToken, seedArchives: false });
  assert.deepEqual(seed.versions, [2, 3]);
  assert.throws(
    () => seed.open(v1.id, v1.ciphertext),
    (error) =>
      error instanceof RotorCodecError &&
      error.message.includes('no KEK version 1 in this keyring') &&
      error.message.includes('grant `read` on secret/data/ibn/encryption-key-archive/*') &&
      error.message.includes('`rotor policy app`') &&
      !/[0-9a-f]{64}/.test(error.message),
  );
});

// After the one above: staging changes what every later load sees.
test('a staged KEK: the app policy loads it and may not write it; the seed token is told why not', async () => {
  const staged = JSON.parse(
    execFileSync(ROTOR_BIN, ['rotate', '--stage', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  assert.equal(staged.staged.version, fixture.current + 1);

  const app = await Keyring.fromVault({ token: appToken, seedArchives: false });
  assert.equal(app.currentVersion, fixture.current);
  assert.equal(app.stagedVersion, fixture.current + 1);
  assert.deepEqual(app.versions, [1, 2, 3, 4]);
  assert.match(app.seal('staged@IBNMSP', 'x'), /^rotor:v3:/, 'sealed under the current KEK, never the staged one');
  opensEveryRotorWallet(app);

  const seed = await loadKeks({ token: seedToken, seedArchives: false });
  assert.equal(seed.staged, undefined);
  assert.match(seed.stagedSkipped, /refused this token `read` on secret\/data\/ibn\/encryption-key-staged/);
  const stale = new Keyring(seed);
  const underStaged = app.seal('staged@IBNMSP', 'x').replace(/^rotor:v3:/, 'rotor:v4:');
  assert.throws(() => stale.open('staged@IBNMSP', underStaged), /rotor rotate --stage/);

  const kek = { data: { key: 'ab'.repeat(32), kek_version: '4' } };
  for (const [method, path, body] of [
    ['POST', STAGED, kek],
    ['DELETE', 'secret/metadata/ibn/encryption-key-staged'],
  ]) {
    const answer = await vault(appToken, method, path, body);
    assert.equal(answer.status, 403, `${method} ${path} answered ${answer.status}`);
  }
});
