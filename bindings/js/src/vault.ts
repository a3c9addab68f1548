import { hkdfSync } from 'node:crypto';

/**
 * Reads KEKs from Vault KV v2 with rotor's layout (relative to the KV mount):
 *
 * - `<key-path>`, field `key`: the current KEK; its KV version is the KEK version that
 *   `rotor:v<K>:` ciphertexts name;
 * - `<key-path>-archive/v<K>`, field `key`: every KEK version rotor wrote or rotated away from;
 * - versions of `<key-path>` still in its KV history but not archived (a KEK written outside
 *   rotor) are read from there;
 * - `<key-path>-archive/<unix-ms>`, field `key`: the seed script's archives (legacy wallets only);
 * - `<key-path>-staged`, fields `key` and `kek_version`: a KEK `rotor rotate --stage` staged as
 *   the next version, which wallets may name once `rotor promote` runs.
 *
 * With `[tenants] derive-from` in rotor.toml, each of these holds, instead of `key`, the record
 * that derives a tenant's KEK from a root KEK: `derive` (`hkdf-sha256`), `root-path`,
 * `root-version` and `salt`. The key is HKDF-SHA256 of root version `root-version` (read from
 * `<root-path>-archive/v<N>`, else the root's KV history), `salt`, and the context
 * `rotor tenant KEK v1\0<tenant>`, the tenant being the one whose key path the record sits
 * under: `keyPath` names it (the tenant's path from rotor.toml's template) and `tenant` names
 * the tenant.
 *
 * Older versions are read by number (1 to the current one), so a token that may only `read`
 * (the policy `rotor policy app` prints, or one with `read` on `<key-path>` alone) loads every version it
 * can reach. Only the seed's archives, whose names are timestamps, need `list`; without it they
 * are left out, which only matters for legacy wallets from before rotor's first rotation.
 */
export interface VaultOptions {
  /** Default: `VAULT_ADDR`, else `http://127.0.0.1:8200`. */
  addr?: string;
  /** Default: `VAULT_TOKEN`. */
  token?: string;
  /** Default: `VAULT_NAMESPACE`, if set. */
  namespace?: string;
  /** KV v2 mount. Default: `secret`, as rotor's `--kv-mount`. */
  mount?: string;
  /** Default: `ibn/encryption-key`, as rotor's `--key-path`. */
  keyPath?: string;
  /**
   * The tenant whose KEKs `keyPath` holds, when rotor.toml derives tenants' KEKs from a root
   * (`[tenants] derive-from`): the context each of its keys is derived with. Needed only then.
   */
  tenant?: string;
  /** For tests or a proxy; default: the global `fetch`. */
  fetch?: typeof fetch;
  /**
   * List `<key-path>-archive/` for the seed script's archives. Default: true. A token without
   * `list` there (as under the policy `rotor policy app` prints) is refused, which is harmless but shows in Vault's
   * audit log: pass `false` once no legacy wallet from before rotor's first rotation remains.
   */
  seedArchives?: boolean;
}

/** What {@link loadKeks} found. */
export interface VaultKeks {
  /** The current KEK's version: the one to seal with. */
  current: number;
  /** Every KEK version Vault has, current included: version → 64 hex characters. */
  keks: Map<number, string>;
  /** Keys of the seed script's archives, newest first: they can only open legacy wallets. */
  seedArchives: string[];
  /** Older versions Vault did not give, and why (pruned, or refused to this token). */
  unavailable?: Map<number, string>;
  /** Why the seed script's archives were not read, if they were not (no `list`, or not asked). */
  seedArchivesSkipped?: string;
  /**
   * The version of the KEK `rotor rotate --stage` staged, if one is: it is in `keks`, opens
   * wallets, and becomes current when `rotor promote` runs; nothing is sealed under it before.
   */
  staged?: number;
  /** Why a staged KEK could not be read, if Vault refused this token (no `read` on `<key-path>-staged`). */
  stagedSkipped?: string;
}

/** Vault answered with an error status other than 404. */
export class VaultRefusedError extends Error {
  override name = 'VaultRefusedError';
  constructor(
    message: string,
    /** The HTTP status. */
    readonly status: number,
  ) {
    super(message);
  }
}

interface KvData {
  data: { data: Record<string, unknown> | null; metadata: { version: number } };
}

/** A KEK version as a tenant's key path keeps it when it is derived from a root. */
interface DerivedRecord {
  rootPath: string;
  rootVersion: number;
  salt: Buffer;
}

/** The derivation record in `data`, `undefined` if it holds a key; throws if it is malformed. */
function derivedRecord(where: string, data: Record<string, unknown>): DerivedRecord | undefined {
  if (data.derive === undefined) return undefined;
  const { derive, 'root-path': rootPath, 'root-version': rootVersion, salt } = data;
  if (derive !== 'hkdf-sha256') {
    throw new Error(`${where} derives its KEK by ${JSON.stringify(derive)}, which this package does not know`);
  }
  const wellFormed =
    typeof rootPath === 'string' &&
    rootPath.length > 0 &&
    typeof rootVersion === 'string' &&
    /^[1-9][0-9]*$/.test(rootVersion) &&
    typeof salt === 'string' &&
    /^[0-9a-fA-F]{64}$/.test(salt);
  if (!wellFormed) {
    throw new Error(`${where} is a derived KEK record, but \`root-path\`, \`root-version\` or \`salt\` is malformed`);
  }
  return { rootPath, rootVersion: Number(rootVersion), salt: Buffer.from(salt, 'hex') };
}

class Vault {
  readonly #addr: string;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof fetch;
  readonly mount: string;
  readonly #tenant: string | undefined;
  /** Root versions read so far, by `<root-path>@<version>`: every tenant version under one root shares it. */
  readonly #roots = new Map<string, Promise<string>>();

  constructor(options: VaultOptions) {
    this.#addr = (options.addr ?? process.env.VAULT_ADDR ?? 'http://127.0.0.1:8200').replace(/\/+$/, '');
    const token = options.token ?? process.env.VAULT_TOKEN;
    if (!token) {
      throw new Error('no Vault token: set VAULT_TOKEN or pass { token }');
    }
    this.#headers = { 'X-Vault-Token': token };
    const namespace = options.namespace ?? process.env.VAULT_NAMESPACE;
    if (namespace) this.#headers['X-Vault-Namespace'] = namespace;
    this.#fetch = options.fetch ?? fetch;
    this.mount = options.mount ?? 'secret';
    this.#tenant = options.tenant;
  }

  /** The JSON body, or `undefined` on 404 (no such path or version). */
  async get<T>(path: string): Promise<T | undefined> {
    const url = `${this.#addr}/v1/${this.mount}/${path}`;
    let response: Response;
    try {
      response = await this.#fetch(url, { headers: this.#headers });
    } catch (error) {
      throw new Error(`Vault at ${this.#addr} cannot be reached: ${(error as Error).message}`);
    }
    if (response.status === 404) return undefined;
    if (!response.ok) {
      const body = await response.text();
      throw new VaultRefusedError(
        `Vault refused GET ${this.mount}/${path} (HTTP ${response.status}): ${body.slice(0, 300)}`,
        response.status,
      );
    }
    return (await response.json()) as T;
  }

  /**
   * The KEK a KV v2 secret (optionally one version) holds: its field `key`, or the key its
   * derivation record derives. `undefined` if there is none.
   */
  async key(path: string, version?: number): Promise<{ key: string; version: number } | undefined> {
    const query = version === undefined ? '' : `?version=${version}`;
    const secret = await this.get<KvData>(`data/${path}${query}`);
    // A deleted version answers 404 too; a destroyed one carries `data: null`.
    if (secret === undefined || secret.data.data === null) return undefined;
    const key = await this.kekIn(`${this.mount}/${path}`, secret.data.data);
    return { key, version: secret.data.metadata.version };
  }

  /** The KEK in a secret's `data`, read from `where`: its `key`, or derived from the root. */
  async kekIn(where: string, data: Record<string, unknown>): Promise<string> {
    const record = derivedRecord(where, data);
    if (record === undefined) {
      const key = data.key;
      if (typeof key !== 'string' || !/^[0-9a-fA-F]{64}$/.test(key)) {
        throw new Error(`${where} field \`key\` is not a KEK: it must be 64 hex characters`);
      }
      return key;
    }
    if (this.#tenant === undefined) {
      throw new Error(
        `${where} is derived from the root KEK at ${this.mount}/${record.rootPath}: pass { tenant } (the tenant ` +
          `whose key path this is) to derive it`,
      );
    }
    const root = Buffer.from(await this.root(record.rootPath, record.rootVersion), 'hex');
    const info = Buffer.concat([Buffer.from('rotor tenant KEK v1\0'), Buffer.from(this.#tenant, 'utf8')]);
    const derived = Buffer.from(hkdfSync('sha256', root, record.salt, info, 32));
    root.fill(0);
    const hex = derived.toString('hex');
    derived.fill(0);
    return hex;
  }

  /** Root version `version` at `rootPath`: from its archive, else the root's KV history. */
  root(rootPath: string, version: number): Promise<string> {
    const cached = `${rootPath}@${version}`;
    let reading = this.#roots.get(cached);
    if (reading === undefined) {
      reading = (async () => {
        const found = (await this.key(`${rootPath}-archive/v${version}`)) ?? (await this.key(rootPath, version));
        if (found === undefined) {
          throw new Error(
            `root KEK version ${version} is neither in ${this.mount}/${rootPath}-archive/v${version} nor in the ` +
              `version history of ${this.mount}/${rootPath}`,
          );
        }
        return found.key;
      })();
      this.#roots.set(cached, reading);
    }
    return reading;
  }
}

/** At most this many requests to Vault at once while reading older versions. */
const PARALLEL_READS = 8;

/** Runs `task` for each item, `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** `read()`, or `'denied'` when Vault refuses this token (HTTP 403). */
async function unlessDenied<T>(read: () => Promise<T>): Promise<T | 'denied'> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof VaultRefusedError && error.status === 403) return 'denied';
    throw error;
  }
}

/**
 * Loads the current KEK and every older one Vault has, with rotor's path layout. Needs `read` on
 * `<key-path>`; `read` on `<key-path>-archive/*` for versions gone from KV's history (it keeps 10
 * by default); `list` on the archive's metadata only for the seed script's archives.
 */
export async function loadKeks(options: VaultOptions = {}): Promise<VaultKeks> {
  const vault = new Vault(options);
  const keyPath = options.keyPath ?? 'ibn/encryption-key';
  const archive = `${keyPath}-archive`;
  const where = (path: string) => `${vault.mount}/${path}`;

  const current = await vault.key(keyPath);
  if (current === undefined) {
    throw new Error(
      `no KEK at ${where(keyPath)} in Vault: store the first one with \`rotor migrate-kek --from-env VAR\``,
    );
  }
  const keks = new Map<number, string>([[current.version, current.key]]);
  const unavailable = new Map<number, string>();

  // Each older version by number: rotor's archive first (it outlives KV's max_versions), then the
  // KV history of the key path, which a token with `read` on the key path alone may also read.
  const older = Array.from({ length: current.version - 1 }, (_, i) => i + 1);
  await eachLimited(older, PARALLEL_READS, async (version) => {
    const archived = await unlessDenied(() => vault.key(`${archive}/v${version}`));
    if (archived !== undefined && archived !== 'denied') {
      keks.set(version, archived.key);
      return;
    }
    const inHistory = await unlessDenied(() => vault.key(keyPath, version));
    if (inHistory !== undefined && inHistory !== 'denied') {
      keks.set(version, inHistory.key);
    } else if (archived === 'denied') {
      unavailable.set(
        version,
        `Vault refused this token \`read\` on ${where(`data/${archive}/v${version}`)} and version ${version} ` +
          `is no longer in the KV history of ${where(keyPath)}: grant \`read\` on ${where(`data/${archive}/*`)} ` +
          `(\`rotor policy app\` prints such a policy)`,
      );
    } else {
      unavailable.set(
        version,
        `neither ${where(`${archive}/v${version}`)} nor version ${version} of ${where(keyPath)} exists ` +
          `in Vault (pruned by \`rotor prune\`, or never written)`,
      );
    }
  });

  const { staged, stagedSkipped } = await loadStaged(vault, keyPath, current.version, keks);

  const seedArchives: string[] = [];
  let seedArchivesSkipped: string | undefined;
  if (options.seedArchives === false) {
    seedArchivesSkipped = 'the seed script\'s archives were not read ({ seedArchives: false })';
  } else {
    const listing = await unlessDenied(() =>
      vault.get<{ data: { keys: string[] } }>(`metadata/${archive}?list=true`),
    );
    if (listing === 'denied') {
      seedArchivesSkipped =
        `the seed script's archives were not read: Vault refused this token \`list\` on ` +
        `${where(`metadata/${archive}/`)} (add it to the token's policy if legacy wallets from before ` +
        `rotor's first rotation remain)`;
    } else {
      const stamps = (listing?.data.keys ?? [])
        .filter((name) => /^[0-9]+$/.test(name))
        .sort((a, b) => Number(b) - Number(a));
      const found = new Array<string | undefined>(stamps.length);
      await eachLimited([...stamps.keys()], PARALLEL_READS, async (index) => {
        found[index] = (await vault.key(`${archive}/${stamps[index]}`))?.key;
      });
      seedArchives.push(...found.filter((key): key is string => key !== undefined));
    }
  }
  return {
    current: current.version,
    keks,
    seedArchives,
    unavailable,
    seedArchivesSkipped,
    staged,
    stagedSkipped,
  };
}

/**
 * Adds the staged KEK to `keks` if one is staged as the version after `current`. Loading it
 * before `rotor promote` is the point of staging: this keyring then opens every wallet the
 * promotion moves, without a reload. A copy whose version is not ahead of `current` is one a
 * promotion left behind, and is ignored.
 */
async function loadStaged(
  vault: Vault,
  keyPath: string,
  current: number,
  keks: Map<number, string>,
): Promise<{ staged?: number; stagedSkipped?: string }> {
  const path = `${keyPath}-staged`;
  const secret = await unlessDenied(() => vault.get<KvData>(`data/${path}`));
  if (secret === 'denied') {
    return {
      stagedSkipped:
        `a KEK staged by \`rotor rotate --stage\` was not read: Vault refused this token \`read\` on ` +
        `${vault.mount}/data/${path} (\`rotor policy app\` prints a policy that grants it)`,
    };
  }
  const data = secret?.data.data;
  if (!data) return {};
  const version = data.kek_version;
  if (typeof version !== 'string' || !/^[0-9]+$/.test(version)) {
    throw new Error(`${vault.mount}/${path} is not a staged KEK: it needs \`kek_version\``);
  }
  const staged = Number(version);
  if (staged !== current + 1) return {};
  keks.set(staged, await vault.kekIn(`${vault.mount}/${path}`, data));
  return { staged };
}
