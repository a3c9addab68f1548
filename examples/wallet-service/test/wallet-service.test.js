// The example service against a real OpenBao and rotor, set up by tests/js_package.rs: it caches
// the KEKs, and reads a wallet sealed under a KEK that rotor made after the cache was filled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import { Keyring } from '@rotor/codec';
import { WalletService } from '../dist/wallet-service.js';

const { ROTOR_BIN } = process.env;
if (!ROTOR_BIN || !process.env.VAULT_ADDR) {
  throw new Error('this file needs the OpenBao and rotor that tests/js_package.rs sets up: run `cargo test --release --test js_package`');
}

/** The application's table, in memory. */
class Wallets extends Map {
  async put(id, ciphertext) {
    this.set(id, ciphertext);
  }
}

/** Counts requests to Vault. */
function countingFetch() {
  const counted = (url, init) => {
    counted.requests += 1;
    return fetch(url, init);
  };
  counted.requests = 0;
  return counted;
}

const identity = (label) => ({
  credentials: { certificate: `-----BEGIN CERTIFICATE-----\n${label}\n`, privateKey: 'k' },
  mspId: 'IBNMSP',
  type: 'X.509',
  version: 1,
});

test('the KEKs come from Vault once, then from the cache, until it expires', async () => {
  const vault = countingFetch();
  let clock = 0;
  const service = new WalletService(new Wallets(), { fetch: vault, cacheMs: 1000, now: () => clock });
  await service.enroll('alice@IBNMSP', identity('alice'));
  const afterFirstLoad = vault.requests;
  assert.ok(afterFirstLoad > 0);
  assert.deepEqual(await service.getIdentity('alice@IBNMSP'), identity('alice'));
  await Promise.all([service.getKeyring(), service.getKeyring()]);
  assert.equal(vault.requests, afterFirstLoad, 'cached');
  clock = 1001;
  await service.getKeyring();
  assert.equal(vault.requests, 2 * afterFirstLoad, 'reloaded once the cache expired');
});

test('a wallet sealed under a KEK newer than the cache opens after one reload; older ones still open', async () => {
  const wallets = new Wallets();
  const vault = countingFetch();
  const service = new WalletService(wallets, { fetch: vault });
  await service.enroll('before@IBNMSP', identity('before'));
  const before = (await service.getKeyring()).currentVersion;
  const loads = vault.requests;

  // The operator rotates; another instance of the application, already on the new KEK, enrolls.
  execFileSync(ROTOR_BIN, ['rotate', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const elsewhere = await Keyring.fromVault();
  assert.equal(elsewhere.currentVersion, before + 1);
  await wallets.put('after@IBNMSP', elsewhere.seal('after@IBNMSP', JSON.stringify(identity('after'))));

  assert.deepEqual(await service.getIdentity('after@IBNMSP'), identity('after'));
  assert.equal((await service.getKeyring()).currentVersion, before + 1);
  assert.ok(vault.requests > loads, 'reloaded from Vault');
  const reloaded = vault.requests;
  assert.deepEqual(await service.getIdentity('before@IBNMSP'), identity('before'));
  assert.equal(vault.requests, reloaded, 'an archived version needs no reload');

  await service.enroll('later@IBNMSP', identity('later'));
  assert.match(wallets.get('later@IBNMSP'), new RegExp(`^rotor:v${before + 1}:`));
});

test('a failed load is not cached, and the error names the fix', async () => {
  const service = new WalletService(new Wallets(), { keyPath: 'not/there' });
  await assert.rejects(service.getKeyring(), /rotor migrate-kek/);
  await assert.rejects(service.getKeyring(), /rotor migrate-kek/);
});

// Last: it leaves the KEK promoted.
test('a staged KEK: the service seals under the current one, and opens what the promotion moves without a reload', async () => {
  execFileSync(ROTOR_BIN, ['rotate', '--stage', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const wallets = new Wallets();
  const vault = countingFetch();
  const service = new WalletService(wallets, { fetch: vault });
  await service.enroll('staged-before@IBNMSP', identity('staged-before'));
  const keyring = await service.getKeyring();
  assert.equal(keyring.stagedVersion, keyring.currentVersion + 1);
  assert.match(wallets.get('staged-before@IBNMSP'), new RegExp(`^rotor:v${keyring.currentVersion}:`));
  const loads = vault.requests;

  // The operator promotes; an instance that loaded its keys since seals under the new KEK.
  execFileSync(ROTOR_BIN, ['promote', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const elsewhere = await Keyring.fromVault();
  assert.equal(elsewhere.currentVersion, keyring.stagedVersion);
  assert.equal(elsewhere.stagedVersion, undefined);
  await wallets.put('promoted@IBNMSP', elsewhere.seal('promoted@IBNMSP', JSON.stringify(identity('promoted'))));

  assert.deepEqual(await service.getIdentity('promoted@IBNMSP'), identity('promoted'));
  assert.equal(vault.requests, loads, 'no reload: the staged KEK came with the first load');
  const sealedBefore = elsewhere.open('staged-before@IBNMSP', wallets.get('staged-before@IBNMSP'));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(sealedBefore)), identity('staged-before'));
});
