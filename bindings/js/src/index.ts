/**
 * rotor's wallet formats for Node.js.
 *
 * Every operation runs in rotor's own codec, a WebAssembly component (`codec-component/`, WIT
 * world `codec-only`) transpiled by jco: the bytes an application writes are the bytes rotor
 * reads, and the other way round, because both run the same code. See docs/FORMAT.md.
 *
 * KEKs are 64 hex characters. They cross into the component on every call and are wiped there
 * after use; on the JS side they are strings, which JS cannot wipe, so keep them in as few
 * places as possible (a {@link Keyring} holds them in a private field).
 */
import { codec } from '../generated/codec.js';

export { loadKeks, VaultRefusedError, type VaultKeks, type VaultOptions } from './vault.js';
import { loadKeks, type VaultKeks, type VaultOptions } from './vault.js';

/** KEKs by version: a `Map` or a plain object such as `{ 3: "…64 hex…" }`. */
export type Keks = ReadonlyMap<number, string> | Readonly<Record<number, string>>;

/** A wallet that does not open or seal, or a malformed key. The message never holds key material. */
export class RotorCodecError extends Error {
  override name = 'RotorCodecError';
}

/** The component reports a failed `result` as a jco ComponentError whose payload is our message. */
function call<T>(operation: () => T): T {
  try {
    return operation();
  } catch (error) {
    const payload = (error as { payload?: unknown }).payload;
    if (typeof payload === 'string') {
      throw new RotorCodecError(payload);
    }
    throw error;
  }
}

function versionOf(version: number | string): number {
  const number = typeof version === 'number' ? version : Number(version);
  if (!Number.isInteger(number) || number < 0 || number > 0xffff_ffff) {
    throw new RotorCodecError(`KEK version ${String(version)} is not a whole number from 1 to 2^32-1`);
  }
  return number;
}

function keyList(keks: Keks): Array<[number, string]> {
  const entries = keks instanceof Map ? [...keks.entries()] : Object.entries(keks);
  return entries.map(([version, key]) => [versionOf(version), key]);
}

function bytes(plaintext: Uint8Array | string): Uint8Array {
  return typeof plaintext === 'string' ? new TextEncoder().encode(plaintext) : plaintext;
}

/**
 * Seals `plaintext` for wallet `id` under KEK `kek`, which is version `version`, in rotor's
 * envelope format (`rotor:v<version>:…`), with a fresh random data key.
 */
export function seal(kek: string, version: number, id: string, plaintext: Uint8Array | string): string {
  return call(() => codec.seal(kek, versionOf(version), id, bytes(plaintext)));
}

/**
 * Opens a wallet in either format. An envelope is opened with the KEK of the version it names,
 * and only for the `id` it was sealed for; a legacy ciphertext, which names no version, is tried
 * with each key, newest version first.
 */
export function open(keks: Keks, id: string, ciphertext: string): Uint8Array {
  return call(() => codec.open(keyList(keks), id, ciphertext));
}

/** The KEK version a ciphertext names, 0 for the seed's legacy format; checks structure only. */
export function inspect(ciphertext: string): number {
  return call(() => codec.inspect(ciphertext));
}

/**
 * The KEKs an application needs: the current one, which seals, and every older one rotor keeps,
 * which open wallets not moved yet (or read from a backup).
 */
export class Keyring {
  readonly #keks: Map<number, string>;
  readonly #seedArchives: readonly string[];
  readonly #unavailable: ReadonlyMap<number, string>;
  readonly #seedArchivesSkipped: string | undefined;
  readonly #stagedSkipped: string | undefined;
  /** The version new wallets are sealed under. */
  readonly currentVersion: number;
  /**
   * The KEK `rotor rotate --stage` staged, if one was when the keys were loaded: wallets under it
   * open (they appear once `rotor promote` runs), nothing is sealed under it.
   */
  readonly stagedVersion: number | undefined;

  constructor(keks: VaultKeks) {
    if (!keks.keks.has(keks.current)) {
      throw new RotorCodecError(`the current KEK, version ${keks.current}, is not among the keys given`);
    }
    this.#keks = new Map(keks.keks);
    this.#seedArchives = [...keks.seedArchives];
    this.#unavailable = new Map(keks.unavailable ?? []);
    if (keks.staged !== undefined && !keks.keks.has(keks.staged)) {
      throw new RotorCodecError(`the staged KEK, version ${keks.staged}, is not among the keys given`);
    }
    this.#seedArchivesSkipped = keks.seedArchivesSkipped;
    this.#stagedSkipped = keks.stagedSkipped;
    this.currentVersion = keks.current;
    this.stagedVersion = keks.staged;
  }

  /**
   * Reads the KEKs from Vault with rotor's layout (see {@link loadKeks}): the current one, then
   * each older version by number. A token with `read` only is enough (`rotor policy app`).
   */
  static async fromVault(options: VaultOptions = {}): Promise<Keyring> {
    return new Keyring(await loadKeks(options));
  }

  /** The KEK versions this keyring holds, oldest first. */
  get versions(): number[] {
    return [...this.#keks.keys()].sort((a, b) => a - b);
  }

  has(version: number): boolean {
    return this.#keks.has(version);
  }

  /** Seals under the current KEK (never a staged one). */
  seal(id: string, plaintext: Uint8Array | string): string {
    return seal(this.#keks.get(this.currentVersion)!, this.currentVersion, id, plaintext);
  }

  /**
   * Opens with the KEK the ciphertext names. Legacy ciphertexts: every rotor KEK, newest first,
   * then the seed script's archives, newest first, as rotor itself does.
   */
  open(id: string, ciphertext: string): Uint8Array {
    const version = inspect(ciphertext);
    if (version !== 0 && !this.#keks.has(version)) {
      throw new RotorCodecError(this.#whyNot(version));
    }
    if (version !== 0 || this.#seedArchives.length === 0) {
      try {
        return open(this.#keks, id, ciphertext);
      } catch (error) {
        if (version === 0 && error instanceof RotorCodecError && this.#seedArchivesSkipped) {
          throw new RotorCodecError(`${error.message}; ${this.#seedArchivesSkipped}`);
        }
        throw error;
      }
    }
    for (const keks of [this.#keks, ...this.#seedArchives.map((key) => new Map([[0, key]]))]) {
      // A legacy ciphertext names no version, so the one given with a seed archive's key is moot.
      try {
        return open(keks, id, ciphertext);
      } catch (error) {
        if (!(error instanceof RotorCodecError)) throw error;
      }
    }
    throw new RotorCodecError(
      'legacy ciphertext opens under neither the current KEK nor any archived one',
    );
  }

  /** Why this keyring has no KEK `version`: the fix for the operator or the application. */
  #whyNot(version: number): string {
    const reason = this.#unavailable.get(version);
    if (reason !== undefined) return `no KEK version ${version} in this keyring: ${reason}`;
    if (version > this.currentVersion) {
      const staged = this.#stagedSkipped === undefined ? '' : ` (${this.#stagedSkipped})`;
      return (
        `no KEK version ${version} in this keyring, whose current version is ${this.currentVersion}: ` +
        `the KEK was rotated since it was loaded; load it again (Keyring.fromVault())${staged}`
      );
    }
    return `no KEK version ${version} in this keyring`;
  }
}
