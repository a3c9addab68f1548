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

class Vault {
  readonly #addr: string;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof fetch;
  readonly mount: string;

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

  /** Field `key` of a KV v2 secret (optionally one version), `undefined` if there is none. */
  async key(path: string, version?: number): Promise<{ key: string; version: number } | undefined> {
    const query = version === undefined ? '' : `?version=${version}`;
    const secret = await this.get<KvData>(`data/${path}${query}`);
    // A deleted version answers 404 too; a destroyed one carries `data: null`.
    const key = secret?.data.data?.key;
    if (secret === undefined || secret.data.data === null) return undefined;
    if (typeof key !== 'string' || !/^[0-9a-fA-F]{64}$/.test(key)) {
      throw new Error(`${this.mount}/${path} field \`key\` is not a KEK: it must be 64 hex characters`);
    }
    return { key, version: secret.data.metadata.version };
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
  const { key, kek_version: version } = data;
  const isKey = typeof key === 'string' && /^[0-9a-fA-F]{64}$/.test(key);
  if (!isKey || typeof version !== 'string' || !/^[0-9]+$/.test(version)) {
    throw new Error(
      `${vault.mount}/${path} is not a staged KEK: it needs \`key\` (64 hex characters) and \`kek_version\``,
    );
  }
  const staged = Number(version);
  if (staged !== current + 1) return {};
  keks.set(staged, key);
  return { staged };
}
