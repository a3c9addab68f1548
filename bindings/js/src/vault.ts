/**
 * Reads KEKs from Vault KV v2 with rotor's layout (relative to the KV mount):
 *
 * - `<key-path>`, field `key`: the current KEK; its KV version is the KEK version that
 *   `rotor:v<K>:` ciphertexts name;
 * - `<key-path>-archive/v<K>`, field `key`: every KEK version rotor wrote or rotated away from;
 * - `<key-path>-archive/<unix-ms>`, field `key`: the seed script's archives (legacy wallets only);
 * - versions still in the KV history of `<key-path>` but not archived (a KEK written outside
 *   rotor) are read from there.
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
}

/** What {@link loadKeks} found. */
export interface VaultKeks {
  /** The current KEK's version: the one to seal with. */
  current: number;
  /** Every KEK version Vault has, current included: version → 64 hex characters. */
  keks: Map<number, string>;
  /** Keys of the seed script's archives, newest first: they can only open legacy wallets. */
  seedArchives: string[];
}

interface KvData {
  data: { data: Record<string, unknown> | null; metadata: { version: number } };
}

interface KvMetadata {
  data: { versions: Record<string, { destroyed: boolean; deletion_time: string }> };
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
      throw new Error(`Vault refused GET ${this.mount}/${path} (HTTP ${response.status}): ${body.slice(0, 300)}`);
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

/** Loads the current KEK and every archived one from Vault, with rotor's path layout. */
export async function loadKeks(options: VaultOptions = {}): Promise<VaultKeks> {
  const vault = new Vault(options);
  const keyPath = options.keyPath ?? 'ibn/encryption-key';
  const archive = `${keyPath}-archive`;

  const [current, listing, metadata] = await Promise.all([
    vault.key(keyPath),
    vault.get<{ data: { keys: string[] } }>(`metadata/${archive}?list=true`),
    vault.get<KvMetadata>(`metadata/${keyPath}`),
  ]);
  if (current === undefined) {
    throw new Error(
      `no KEK at ${vault.mount}/${keyPath} in Vault: store the first one with \`rotor migrate-kek --from-env VAR\``,
    );
  }
  const names = listing?.data.keys ?? [];
  const archived = names.flatMap((name) => (/^v[1-9][0-9]*$/.test(name) ? [Number(name.slice(1))] : []));
  const stamps = names.filter((name) => /^[0-9]+$/.test(name)).sort((a, b) => Number(b) - Number(a));
  const inHistory = Object.entries(metadata?.data.versions ?? {})
    .filter(([, v]) => !v.destroyed && v.deletion_time === '')
    .map(([version]) => Number(version))
    .filter((version) => version !== current.version && !archived.includes(version));

  const keks = new Map<number, string>([[current.version, current.key]]);
  const seedArchives: string[] = [];
  await Promise.all([
    ...archived.map(async (version) => {
      const found = await vault.key(`${archive}/v${version}`);
      if (found) keks.set(version, found.key);
    }),
    ...inHistory.map(async (version) => {
      const found = await vault.key(keyPath, version);
      if (found && !keks.has(version)) keks.set(version, found.key);
    }),
    ...stamps.map(async (stamp, index) => {
      const found = await vault.key(`${archive}/${stamp}`);
      if (found) seedArchives[index] = found.key;
    }),
  ]);
  // The archive of the current version holds the same key as the current path: keep the latter.
  keks.set(current.version, current.key);
  return { current: current.version, keks, seedArchives: seedArchives.filter((key) => key !== undefined) };
}
