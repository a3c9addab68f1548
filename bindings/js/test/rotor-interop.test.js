// The package against rotor and a real OpenBao, set up by tests/js_package.rs (`cargo test --test
// js_package`, part of scripts/test): it passes the wallets rotor sealed and the Vault to read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';

import { Keyring, RotorCodecError, inspect, loadKeks, open } from '../dist/index.js';

const { ROTOR_JS_FIXTURE, ROTOR_JS_OUT } = process.env;
if (!ROTOR_JS_FIXTURE || !ROTOR_JS_OUT || !process.env.VAULT_ADDR) {
  throw new Error(
    'this file needs the OpenBao and wallets that tests/js_package.rs sets up: run `cargo test --release --test js_package`',
  );
}
const fixture = JSON.parse(readFileSync(ROTOR_JS_FIXTURE, 'utf8'));
const plaintextOf = (wallet) => Buffer.from(wallet.plaintext_base64, 'base64');

test('loadKeks reads every KEK version rotor wrote, and the seed script archive', async () => {
  const keks = await loadKeks();
  assert.equal(keks.current, fixture.current);
  assert.deepEqual([...keks.keks.keys()].sort(), [1, 2, 3]);
  for (const key of keks.keks.values()) assert.match(key, /^[0-9a-f]{64}$/);
  assert.equal(new Set(keks.keks.values()).size, 3, 'each version has its own key');
  assert.equal(keks.seedArchives.length, 1);
});

test('every wallet rotor wrote opens in Node: legacy, seed-era legacy, and envelopes of v1 to v3', async () => {
  const keyring = await Keyring.fromVault();
  const seen = new Set();
  for (const wallet of fixture.wallets) {
    seen.add(inspect(wallet.ciphertext));
    assert.deepEqual(Buffer.from(keyring.open(wallet.id, wallet.ciphertext)), plaintextOf(wallet), wallet.id);
  }
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3], 'the fixture covers legacy and every version');
});

test('the plain open() takes a version map; a ciphertext moved to another id does not open', async () => {
  const { keks } = await loadKeks();
  const envelope = fixture.wallets.find((w) => inspect(w.ciphertext) === 3);
  assert.deepEqual(Buffer.from(open(keks, envelope.id, envelope.ciphertext)), plaintextOf(envelope));
  const other = fixture.wallets.find((w) => w.id !== envelope.id);
  assert.throws(() => open(keks, other.id, envelope.ciphertext), RotorCodecError);
  const withoutItsKey = new Map([...keks].filter(([version]) => version !== 3));
  assert.throws(() => open(withoutItsKey, envelope.id, envelope.ciphertext), /no KEK version 3/);
});

test('Vault errors name the fix', async () => {
  await assert.rejects(loadKeks({ keyPath: 'no/such-key' }), /no KEK at secret\/no\/such-key.*migrate-kek/);
  await assert.rejects(loadKeks({ token: 'wrong-token' }), /Vault refused .*HTTP 403/);
  await assert.rejects(loadKeks({ addr: 'http://127.0.0.1:9' }), /cannot be reached/);
});

test('Node seals wallets that rotor opens (checked by tests/js_package.rs)', async () => {
  const keyring = await Keyring.fromVault();
  const sealed = ['sealed-by-node-1@IBNMSP', 'sealed-by-node-2@IBNMSP'].map((id) => {
    const plaintext = Buffer.from(JSON.stringify({ mspId: 'IBNMSP', label: id, bytes: [0, 255] }));
    const ciphertext = keyring.seal(id, plaintext);
    assert.equal(inspect(ciphertext), fixture.current);
    return { id, ciphertext, plaintext_base64: plaintext.toString('base64') };
  });
  writeFileSync(ROTOR_JS_OUT, JSON.stringify(sealed));
});
