// Tenants whose KEKs rotor derives from one root ([tenants] derive-from), against a real
// OpenBao set up by tests/js_package.rs: with the policy `rotor --tenant acme policy app`
// prints, acme's Keyring derives each key itself (node:crypto's HKDF, not rotor's code),
// opens every acme wallet of every version, seals under the current one, and opens nothing of
// globex's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';

import { Keyring, RotorCodecError, VaultRefusedError, inspect } from '../dist/index.js';

const { ROTOR_JS_FIXTURE, ROTOR_APP_POLICY_FILE, ROTOR_JS_OUT, VAULT_ADDR, VAULT_TOKEN } = process.env;
if (!ROTOR_JS_FIXTURE || !ROTOR_APP_POLICY_FILE || !ROTOR_JS_OUT || !VAULT_ADDR || !VAULT_TOKEN) {
  throw new Error(
    'this file needs the OpenBao and wallets that tests/js_package.rs sets up: run `cargo test --release --test js_package`',
  );
}
const fixture = JSON.parse(readFileSync(ROTOR_JS_FIXTURE, 'utf8'));
const plaintextOf = (wallet) => Buffer.from(wallet.plaintext_base64, 'base64');
const ACME = 'ibn/acme/encryption-key';

async function appToken() {
  const call = async (method, path, body) => {
    const response = await fetch(`${VAULT_ADDR}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': VAULT_TOKEN, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  const policy = readFileSync(ROTOR_APP_POLICY_FILE, 'utf8');
  assert.equal((await call('PUT', 'sys/policies/acl/rotor-acme-app', { policy })).status, 204);
  const created = await call('POST', 'auth/token/create', {
    policies: ['rotor-acme-app'],
    no_default_policy: true,
    ttl: '10m',
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  return created.body.auth.client_token;
}
const token = await appToken();

test("acme's keyring derives every version and opens every acme wallet", async () => {
  const acme = await Keyring.fromVault({ token, keyPath: ACME, tenant: 'acme', seedArchives: false });
  assert.deepEqual(acme.versions, [1, 2, 3], 'v1 stored, v2 derived, v3 derived and staged');
  assert.equal(acme.currentVersion, 2);
  assert.equal(acme.stagedVersion, 3);
  const versions = new Set();
  for (const wallet of fixture.acme) {
    versions.add(inspect(wallet.ciphertext));
    assert.deepEqual(Buffer.from(acme.open(wallet.id, wallet.ciphertext)), plaintextOf(wallet), wallet.id);
  }
  assert.deepEqual([...versions].sort(), [0, 2], 'legacy under v1 and envelopes under v2');

  // Sealed under the current (derived) version, never the staged one; rotor opens it.
  const id = 'sealed-by-node@acme';
  const plaintext = 'a wallet node sealed under a derived KEK';
  const ciphertext = acme.seal(id, plaintext);
  assert.ok(ciphertext.startsWith('rotor:v2:'), ciphertext);
  writeFileSync(
    ROTOR_JS_OUT,
    JSON.stringify([{ id, ciphertext, plaintext_base64: Buffer.from(plaintext).toString('base64') }]),
  );
});

test("acme's keys open nothing of globex's, and derived as another tenant's they open nothing of acme's", async () => {
  const acme = await Keyring.fromVault({ token, keyPath: ACME, tenant: 'acme', seedArchives: false });
  for (const wallet of fixture.globex) {
    assert.throws(() => acme.open(wallet.id, wallet.ciphertext), RotorCodecError, wallet.id);
  }
  const misnamed = await Keyring.fromVault({ token, keyPath: ACME, tenant: 'globex', seedArchives: false });
  const derived = fixture.acme.filter((wallet) => inspect(wallet.ciphertext) === 2);
  assert.ok(derived.length > 0);
  for (const wallet of derived) {
    assert.throws(() => misnamed.open(wallet.id, wallet.ciphertext), RotorCodecError, wallet.id);
  }
});

test('without { tenant } a derived version is refused by name; the policy reaches no other tenant', async () => {
  await assert.rejects(
    Keyring.fromVault({ token, keyPath: ACME, seedArchives: false }),
    /derived from the root KEK at secret\/ibn\/tenant-root: pass \{ tenant \}/,
  );
  await assert.rejects(
    Keyring.fromVault({ token, keyPath: 'ibn/globex/encryption-key', tenant: 'globex', seedArchives: false }),
    (error) => error instanceof VaultRefusedError && error.status === 403,
  );
});
