/**
 * The seed's WalletService, rewritten on @rotor/codec.
 *
 * The seed cached one KEK from `getEncryptionKey()` and wrote `base64(iv|tag|ciphertext)` under
 * it, so after a rotation every cached copy of the service was wrong until restarted. Here the
 * service caches a keyring of every KEK version; a wallet names the version it was sealed under,
 * so a wallet newer than the cache makes the service reload from Vault once, and older wallets
 * (not moved yet, or restored from a backup) open with the archived keys.
 *
 * Its Vault token needs only the policy `rotor policy app` prints (read the KEK and rotor's archive).
 *
 * The seed fell back to WALLET_ENCRYPTION_KEY when Vault had no key. That fallback is gone on
 * purpose: once rotor rotates, the environment's key is stale, and sealing under it would write
 * wallets under a key Vault does not know. Until `rotor migrate-kek` has run, the service fails
 * and says so.
 */
import { Keyring, RotorCodecError, inspect, type VaultOptions } from '@rotor/codec';

/** The application's wallet table: ciphertexts by wallet id. */
export interface WalletRepository {
  get(id: string): Promise<string | undefined>;
  put(id: string, ciphertext: string): Promise<void>;
}

export interface WalletServiceOptions extends VaultOptions {
  /** How long the KEKs are used before Vault is asked again; default 5 minutes. New wallets
   * are sealed under the KEK current when they were loaded, which rotor also moves later. */
  cacheMs?: number;
  /** The clock, for tests. */
  now?: () => number;
}

/** A Fabric X.509 identity as the seed's wallets hold it. */
export interface Identity {
  credentials: { certificate: string; privateKey: string };
  mspId: string;
  type: 'X.509';
  version: number;
}

export class WalletService {
  readonly #wallets: WalletRepository;
  readonly #options: WalletServiceOptions;
  #keyring?: Promise<Keyring>;
  #loadedAt = 0;

  constructor(wallets: WalletRepository, options: WalletServiceOptions = {}) {
    this.#wallets = wallets;
    this.#options = options;
  }

  /**
   * The seed's `getEncryptionKey()`, for every key version: Vault first, then the cache. One
   * load at a time: concurrent callers share the pending one.
   */
  async getKeyring({ refresh = false } = {}): Promise<Keyring> {
    const now = (this.#options.now ?? Date.now)();
    const stale = now - this.#loadedAt > (this.#options.cacheMs ?? 5 * 60_000);
    if (this.#keyring === undefined || refresh || stale) {
      const loading = Keyring.fromVault(this.#options);
      this.#keyring = loading;
      this.#loadedAt = now;
      // A failed load must not stay cached: the next call tries Vault again.
      loading.catch(() => {
        if (this.#keyring === loading) this.#keyring = undefined;
      });
    }
    return this.#keyring;
  }

  /** Seals an identity under the current KEK and stores it. */
  async enroll(id: string, identity: Identity): Promise<void> {
    const keyring = await this.getKeyring();
    await this.#wallets.put(id, keyring.seal(id, JSON.stringify(identity)));
  }

  /** Opens a stored identity, whichever KEK version (or the legacy format) it is under. */
  async getIdentity(id: string): Promise<Identity> {
    const ciphertext = await this.#wallets.get(id);
    if (ciphertext === undefined) {
      throw new Error(`no wallet for ${id}`);
    }
    let keyring = await this.getKeyring();
    const version = inspect(ciphertext);
    if (version > keyring.currentVersion && !keyring.has(version)) {
      // Sealed under a KEK newer than the cache: rotor rotated since it was loaded. (A KEK that
      // was staged when the cache was filled is in it already, so a staged roll-out needs no
      // reload; an older version the keyring lacks is not in Vault for this token: reloading
      // would not help, and the keyring's error says why.)
      keyring = await this.getKeyring({ refresh: true });
    }
    try {
      return JSON.parse(new TextDecoder().decode(keyring.open(id, ciphertext))) as Identity;
    } catch (error) {
      if (error instanceof RotorCodecError) {
        throw new Error(`wallet ${id} does not open: ${error.message}`);
      }
      throw error;
    }
  }
}
