// Signing in: an API key exchanged for a token (PUT /v2/api_auth), the token kept in
// sessionStorage (this tab only, gone when it closes) and renewed before it expires.
//
// The API key itself is kept in memory only, never in storage: a token that leaks expires
// within its lifetime, a key does not. The price is that a reloaded page keeps its token but
// cannot renew it; when that token runs out the console asks for the key again.

import { renewDelay } from "./model.js";

const STORE = "eslchan.console.session";

export class Session {
  constructor(api) {
    this.api = api;
    this.state = null;
    this.apiKey = null;
    this.timer = null;
    this.renewing = null;
    this.listeners = { renewed: [], ended: [] };
  }

  on(what, callback) {
    this.listeners[what].push(callback);
  }

  emit(what, ...args) {
    for (const callback of this.listeners[what]) callback(...args);
  }

  /**
   * The stored session of this tab: "restored" when its token is still good for a while (a
   * quarter of its life, at most 10 s), "expired" when there was one but it is too old, else
   * "none".
   */
  restore() {
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(STORE) || "null");
    } catch {
      stored = null;
    }
    if (!stored || !stored.auth_token) {
      sessionStorage.removeItem(STORE);
      return "none";
    }
    const margin = Math.min(10000, (stored.token_ttl * 1000) / 4);
    if (this.expiresAt(stored) - Date.now() < margin) {
      sessionStorage.removeItem(STORE);
      return "expired";
    }
    this.state = stored;
    this.schedule();
    return "restored";
  }

  expiresAt(state = this.state) {
    return state ? state.issued_at + state.token_ttl * 1000 : 0;
  }

  token() {
    return this.state ? this.state.auth_token : null;
  }

  get account() {
    return this.state && {
      id: this.state.account_id,
      name: this.state.account_name,
      superduper: this.state.superduper_admin,
    };
  }

  /** Exchange `apiKey` for a token; throws the ApiError (401 wrong key, 429 too many tries). */
  async login(apiKey) {
    const issuedAt = Date.now();
    const answer = await this.api.request("PUT", this.api.base + "v2/api_auth", {
      body: { data: { api_key: apiKey } },
      auth: false,
    });
    this.apiKey = apiKey;
    this.state = { ...answer.data, auth_token: answer.body.auth_token, issued_at: issuedAt };
    sessionStorage.setItem(STORE, JSON.stringify(this.state));
    this.schedule();
    return this.account;
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.state) return;
    const delay = this.apiKey
      ? renewDelay(this.state.issued_at, this.state.token_ttl, Date.now())
      : Math.max(0, this.expiresAt() - Date.now());
    this.timer = setTimeout(() => this.renew(), Math.min(delay, 2 ** 31 - 1));
  }

  /** A fresh token from the key in memory; false (and the session ends) when that fails. */
  renew() {
    if (!this.renewing) {
      this.renewing = this.tryRenew().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  async tryRenew() {
    if (!this.apiKey) {
      this.end("Your session has expired. Enter your API key to continue.");
      return false;
    }
    try {
      await this.login(this.apiKey);
    } catch (err) {
      this.end(err.message);
      return false;
    }
    this.emit("renewed");
    return true;
  }

  /** A request met 401: renew once; the caller retries when this answers true. */
  unauthorized() {
    return this.renew();
  }

  end(reason) {
    clearTimeout(this.timer);
    this.state = null;
    sessionStorage.removeItem(STORE);
    this.emit("ended", reason);
  }

  logout() {
    this.apiKey = null;
    this.end("");
  }
}
