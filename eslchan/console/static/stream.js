// The account's live event stream (Server-Sent Events), kept open: EventSource retries by
// itself after a dropped connection; when the server refuses or ends the stream for good
// (overflow, expired token, eslchan stopping) a new one is opened here, with backoff. Every
// (re)open is reported so the board reloads the listing, and so is every `reset`: the server
// could not give all the events the board missed (past its history, or a cluster instance's
// mirror started again from the snapshots).

const BACKOFF_MS = [500, 1000, 2000, 5000, 10000];

export class LiveStream {
  /**
   * `url()` builds the stream URL (with the current token); `handlers`: open(), event(name,
   * data), status(state, detail) where state is "connecting" | "live" | "reconnecting",
   * and expired() -> Promise<boolean> (renew the token; false ends the stream).
   */
  constructor(url, eventNames, handlers) {
    this.url = url;
    this.eventNames = eventNames;
    this.handlers = handlers;
    this.source = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.open("connecting");
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.close();
  }

  /** Open a fresh stream now (a new token, another account). */
  restart() {
    this.stop();
    this.start();
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  open(state) {
    this.close();
    if (this.stopped) return;
    this.handlers.status(state);
    const source = new EventSource(this.url());
    this.source = source;
    source.addEventListener("open", () => {
      if (source !== this.source) return;
      this.attempt = 0;
      this.handlers.status("live");
      this.handlers.open();
    });
    for (const name of this.eventNames) {
      source.addEventListener(name.toLowerCase(), (msg) => {
        if (source !== this.source) return;
        let data;
        try {
          data = JSON.parse(msg.data);
        } catch {
          return;
        }
        this.handlers.event(name, data);
      });
    }
    source.addEventListener("reset", () => {
      if (source === this.source) this.handlers.open(); // re-list, and go on with this stream
    });
    source.addEventListener("overflow", () => {
      // the console fell behind: a new stream and a fresh listing catch up
      if (source === this.source) this.retry(0);
    });
    source.addEventListener("unauthorized", () => {
      if (source === this.source) this.renewThenRetry();
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.handlers.status("reconnecting"); // the browser retries by itself
      } else {
        this.retry(); // refused (401, 503…) or ended: EventSource gives up, so do it here
      }
    });
  }

  async renewThenRetry() {
    this.close();
    if (await this.handlers.expired()) this.retry(0);
    else this.stop();
  }

  retry(delay) {
    this.close();
    if (this.stopped) return;
    const wait = delay ?? BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.handlers.status("reconnecting", wait);
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      // a refusal may be an expired token, which EventSource cannot tell us: check first
      if (this.handlers.beforeRetry && !(await this.handlers.beforeRetry())) return;
      this.open("reconnecting");
    }, wait);
  }
}
