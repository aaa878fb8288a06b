// The peer's storage: oidc-provider's own memory adapter over a store that never evicts a live
// entry. The provider's default store is an LRU of 1,000 entries: once a test has minted about
// a thousand tokens it forgets the oldest clients, registration access tokens and initial
// access tokens (a chaos campaign of 50 clients on 15 s tokens saw a signed registration
// refused with `invalid_token` after the peer had evicted its registration token). A bank's
// AS does not forget its clients; this store keeps every entry until its own expiry, and
// sweeps expired ones once a minute. Pure data structure plus one unref'd timer.

import MemoryAdapter, { setStorage } from 'oidc-provider/lib/adapters/memory_adapter.js';

const SWEEP_MS = 60 * 1000;

/** A Map with the `get` / `set(key, value, { maxAge })` / `delete` surface of the provider's LRU. */
export class ExpiringStore {
  #entries = new Map();

  constructor() {
    setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  get(key) {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiry !== undefined && entry.expiry <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key, value, { maxAge } = {}) {
    const expiry = typeof maxAge === 'number' && Number.isFinite(maxAge)
      ? Date.now() + maxAge
      : undefined;
    this.#entries.set(key, { value, expiry });
    return this;
  }

  delete(key) {
    return this.#entries.delete(key);
  }

  /** Drops every expired entry. */
  sweep() {
    const now = Date.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiry !== undefined && entry.expiry <= now) this.#entries.delete(key);
    }
  }

  get size() {
    return this.#entries.size;
  }
}

/** The `adapter` option of the provider configuration: every model in one [`ExpiringStore`]. */
export function adapter() {
  const store = new ExpiringStore();
  setStorage(store);
  return (model) => new MemoryAdapter(model, store);
}
