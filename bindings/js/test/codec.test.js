// The package on its own: docs/FORMAT.md's test vectors, and what must not open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Keyring, RotorCodecError, inspect, open, seal } from '../dist/index.js';

const format = readFileSync(new URL('../../../docs/FORMAT.md', import.meta.url), 'utf8');
const vectors = JSON.parse(format.split('```json')[1].split('```')[0]);
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const KEK = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const OTHER = '1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100';

test('docs/FORMAT.md has vectors of every kind', () => {
  assert.deepEqual(new Set(vectors.map((v) => v.kind)), new Set(['envelope', 'rewrap', 'legacy']));
});

for (const [n, v] of vectors.entries()) {
  test(`vector ${n} (${v.kind}, id ${v.id}) opens to its plaintext`, () => {
    const version = v.kek_version ?? 0;
    assert.equal(inspect(v.ciphertext), version);
    const keks = new Map([[Math.max(version, 1), v.kek]]);
    assert.equal(hex(open(keks, v.id, v.ciphertext)), v.plaintext_hex);
    if (v.kind === 'rewrap') {
      // The input, under the old KEK, opens too: a rewrap keeps the data part.
      assert.equal(hex(open({ 3: v.old_kek }, v.id, v.input)), v.plaintext_hex);
    }
  });
}

test('the first vector fails with another id, an edited prefix, or another KEK', () => {
  const v = vectors[0];
  assert.throws(() => open({ 3: KEK }, 'user-2@IBNMSP', v.ciphertext), /does not open/);
  const edited = v.ciphertext.replace('rotor:v3:', 'rotor:v4:');
  assert.throws(() => open({ 4: KEK }, v.id, edited), /does not open/);
  assert.throws(() => open({ 3: OTHER }, v.id, v.ciphertext), /does not open/);
});

test('seal then open round-trips, with a fresh data key each time', () => {
  const plaintext = JSON.stringify({ mspId: 'IBNMSP', type: 'X.509' });
  const first = seal(KEK, 7, 'user-1@IBNMSP', plaintext);
  const second = seal(KEK, 7, 'user-1@IBNMSP', plaintext);
  assert.match(first, /^rotor:v7:/);
  assert.notEqual(first, second);
  assert.equal(inspect(first), 7);
  assert.equal(new TextDecoder().decode(open(new Map([[7, KEK]]), 'user-1@IBNMSP', first)), plaintext);
});

test('a ciphertext moved to another wallet id does not open', () => {
  const sealed = seal(KEK, 2, 'alice@IBNMSP', new Uint8Array([1, 2, 3]));
  assert.throws(() => open({ 2: KEK }, 'mallory@IBNMSP', sealed), (error) => {
    assert.ok(error instanceof RotorCodecError);
    assert.match(error.message, /copied from another wallet id/);
    assert.ok(!error.message.includes(KEK), 'the message must not carry the key');
    return true;
  });
});

test('errors name what is wrong', () => {
  const sealed = seal(KEK, 5, 'w', 'x');
  assert.throws(() => open({ 4: KEK }, 'w', sealed), /no KEK version 5 was given/);
  assert.throws(() => seal('not hex', 1, 'w', 'x'), /64 hex characters/);
  assert.throws(() => seal(KEK, 0, 'w', 'x'), /start at 1/);
  assert.throws(() => open({ 1.5: KEK }, 'w', sealed), /not a whole number/);
  assert.throws(() => inspect('rotor:v1:%%%'), RotorCodecError);
});

test('a keyring opens legacy wallets with rotor KEKs, then with the seed script archives', () => {
  const legacy = vectors.find((v) => v.kind === 'legacy');
  const underRotorKek = new Keyring({ current: 2, keks: new Map([[1, KEK], [2, OTHER]]), seedArchives: [] });
  assert.equal(hex(underRotorKek.open('any', legacy.ciphertext)), legacy.plaintext_hex);
  const underSeedArchive = new Keyring({ current: 1, keks: new Map([[1, OTHER]]), seedArchives: [OTHER, KEK] });
  assert.equal(hex(underSeedArchive.open('any', legacy.ciphertext)), legacy.plaintext_hex);
  const nowhere = new Keyring({ current: 1, keks: new Map([[1, OTHER]]), seedArchives: [OTHER] });
  assert.throws(() => nowhere.open('any', legacy.ciphertext), /neither the current KEK nor any archived one/);

  const sealed = underRotorKek.seal('w', 'hello');
  assert.match(sealed, /^rotor:v2:/);
  assert.deepEqual(underRotorKek.versions, [1, 2]);
  assert.throws(() => new Keyring({ current: 3, keks: new Map([[1, KEK]]), seedArchives: [] }), /version 3/);
});

test('a keyring names why it lacks the KEK version a wallet needs', () => {
  const sealed = (version) => seal(KEK, version, 'w', 'x');
  const keyring = new Keyring({
    current: 3,
    keks: new Map([[2, OTHER], [3, KEK]]),
    seedArchives: [],
    unavailable: new Map([[1, 'neither secret/k-archive/v1 nor version 1 of secret/k exists in Vault']]),
  });
  assert.throws(() => keyring.open('w', sealed(1)), /no KEK version 1 in this keyring: neither secret\/k-archive\/v1/);
  assert.throws(() => keyring.open('w', sealed(4)), /current version is 3: the KEK was rotated since.*Keyring\.fromVault/);
  assert.equal(Buffer.from(keyring.open('w', sealed(3))).toString(), 'x');

  // A legacy wallet no key opens, when the seed archives could not be listed: the message says so.
  const legacy = vectors.find((v) => v.kind === 'legacy');
  const unlisted = new Keyring({
    current: 1,
    keks: new Map([[1, OTHER]]),
    seedArchives: [],
    seedArchivesSkipped: "the seed script's archives were not read: no `list`",
  });
  assert.throws(() => unlisted.open(legacy.id, legacy.ciphertext), /seed script's archives were not read: no `list`/);
});
