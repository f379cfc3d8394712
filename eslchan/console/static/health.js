// The nodes panel: each FreeSWITCH node's link state, channels and events per second (a small
// live chart), from GET /health and GET /metrics every couple of seconds.

import { h, setAttr, setText, svg } from "./dom.js";
import { parseMetrics, ratePerSecond, sparklinePoints, sumBy } from "./model.js";

const EVERY_MS = 2000;
const SAMPLES = 30; // one minute of history
const CHART_W = 200;
const CHART_H = 44;
const LINK_LABELS = {
  up: "Connected",
  degraded: "Slow: commands time out",
  connecting: "Connecting",
  down: "Down",
  auth_failed: "Wrong password",
};

/** A node counts as connected unless /health says it is down (details or not). */
const isUp = (node) => node.up ?? node.state !== "down";

export class HealthPanel {
  /** `nodesChanged(downNodes: Set)` is told whenever the set of unconnected nodes changes;
   * `authHeaders()` gives the session's token header (a superduper admin sees node details). */
  constructor(root, foot, base, nodesChanged, authHeaders = () => ({})) {
    this.root = root;
    this.foot = foot;
    this.base = base;
    this.nodesChanged = nodesChanged;
    this.authHeaders = authHeaders;
    this.cards = new Map();
    this.history = new Map(); // node -> events/s samples
    this.previous = null; // {at, received: {node: n}, sum, count}
    this.down = new Set();
    this.timer = null;
    this.reachable = true;
  }

  start() {
    this.stop();
    this.poll();
    this.timer = setInterval(() => this.poll(), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  async poll() {
    let health;
    let metrics = null;
    try {
      const [healthResp, metricsResp] = await Promise.all([
        fetch(`${this.base}health`, {
          cache: "no-store",
          headers: { Accept: "application/json", ...this.authHeaders() },
        }),
        fetch(`${this.base}metrics`, { cache: "no-store" }),
      ]);
      health = (await healthResp.json()).data; // 503 (no node up) still carries the nodes
      if (metricsResp.ok) metrics = parseMetrics(await metricsResp.text());
    } catch {
      this.reachable = false;
      setText(this.foot, "eslchan is not answering; retrying…");
      this.root.classList.add("unreachable");
      return;
    }
    this.reachable = true;
    this.root.classList.remove("unreachable");
    this.update(health, metrics, performance.now());
  }

  update(health, metrics, at) {
    const nodes = health && health.nodes ? health.nodes : {};
    const received = metrics ? sumBy(metrics, "eslchan_events_received_total", "node") : {};
    const channels = metrics ? sumBy(metrics, "eslchan_channels", "node") : {};
    const dropped = metrics ? sumBy(metrics, "eslchan_events_dropped_total", "node") : {};
    const latencySum = metrics ? sumBy(metrics, "eslchan_esl_command_seconds_sum", "node") : {};
    const latencyCount = metrics ? sumBy(metrics, "eslchan_esl_command_seconds_count", "node") : {};
    const prev = this.previous;
    const seconds = prev ? (at - prev.at) / 1000 : 0;
    const down = new Set();
    for (const [name, node] of Object.entries(nodes)) {
      if (!isUp(node)) down.add(name);
      const count = received[name] ?? node.events_received;
      const rate = prev ? ratePerSecond(prev.received[name], count, seconds) : null;
      const samples = this.history.get(name) || [];
      if (rate !== null) samples.push(rate);
      while (samples.length > SAMPLES) samples.shift();
      this.history.set(name, samples);
      let latency = null;
      if (prev && latencyCount[name] !== undefined) {
        const n = latencyCount[name] - (prev.count[name] ?? 0);
        if (n > 0) latency = ((latencySum[name] - (prev.sum[name] ?? 0)) / n) * 1000;
      }
      this.render(name, node, node.channels ?? channels[name], samples, rate, dropped[name] ?? node.events_dropped,
        latency);
    }
    for (const [name, card] of this.cards) {
      if (!(name in nodes)) {
        card.remove();
        this.cards.delete(name);
      }
    }
    this.previous = { at, received: { ...received }, sum: latencySum, count: latencyCount };
    const up = Object.values(nodes).filter(isUp).length;
    const total = Object.keys(nodes).length;
    const all = health.channels ?? Object.values(channels).reduce((a, b) => a + b, 0);
    setText(this.foot, total ? `${up} of ${total} node${total === 1 ? "" : "s"} connected · ${all} channels in all` : "No node is configured.");
    if (down.size !== this.down.size || [...down].some((n) => !this.down.has(n))) {
      this.down = down;
      this.nodesChanged(new Set(down));
    }
  }

  render(name, node, channels, samples, rate, dropped, latency) {
    let card = this.cards.get(name);
    if (!card) {
      card = this.createCard(name);
      this.cards.set(name, card);
      this.root.append(card);
    }
    const parts = card._parts;
    card.dataset.state = node.link_state && node.state !== "degraded" ? node.link_state : node.state;
    setText(parts.state, LINK_LABELS[card.dataset.state] || card.dataset.state);
    setText(parts.channels, channels ?? 0);
    setText(parts.rate, rate === null ? "…" : formatRate(rate));
    setText(parts.dropped, dropped ?? 0);
    setText(parts.latency, latency === null ? "—" : `${latency < 10 ? latency.toFixed(1) : Math.round(latency)} ms`);
    setText(parts.error, isUp(node) ? "" : node.last_error || "");
    parts.error.hidden = isUp(node) || !node.last_error;
    const peak = Math.max(0, ...samples);
    const points = sparklinePoints(samples, CHART_W, CHART_H, SAMPLES);
    const line = points.map(([x, y]) => `${x},${y}`).join(" ");
    setAttr(parts.line, "points", line);
    setAttr(
      parts.area,
      "points",
      points.length ? `${points[0][0]},${CHART_H} ${line} ${points[points.length - 1][0]},${CHART_H}` : "",
    );
    setText(parts.peak, `peak ${formatRate(peak)}`);
    setAttr(
      parts.chart,
      "aria-label",
      `Events per second on ${name} over the last minute: now ${rate === null ? "unknown" : formatRate(rate)}, peak ${formatRate(peak)}`,
    );
  }

  createCard(name) {
    const parts = {
      state: h("span", { class: "link-badge" }),
      channels: h("dd", {}),
      rate: h("dd", {}),
      dropped: h("dd", {}),
      latency: h("dd", {}),
      error: h("p", { class: "node-error", hidden: true }),
      line: svg("polyline", { class: "spark-line", points: "" }),
      area: svg("polygon", { class: "spark-area", points: "" }),
      peak: h("span", { class: "peak" }),
    };
    parts.chart = svg(
      "svg",
      { class: "spark", viewBox: `0 0 ${CHART_W} ${CHART_H}`, preserveAspectRatio: "none", role: "img" },
      parts.area,
      parts.line,
    );
    const card = h(
      "section",
      { class: "node-card", "aria-label": `Node ${name}` },
      h("header", {}, h("h3", {}, name), parts.state),
      h(
        "dl",
        { class: "node-stats" },
        h("div", {}, h("dt", {}, "Channels"), parts.channels),
        h("div", {}, h("dt", {}, "Events/s"), parts.rate),
        h("div", {}, h("dt", {}, "Dropped"), parts.dropped),
        h("div", {}, h("dt", {}, "ESL cmd"), parts.latency),
      ),
      h("div", { class: "chart" }, h("div", { class: "chart-head" }, h("span", {}, "Events/s, last minute"), parts.peak), parts.chart),
      parts.error,
    );
    card._parts = parts;
    return card;
  }
}

function formatRate(rate) {
  if (rate >= 100) return String(Math.round(rate));
  if (rate >= 10) return rate.toFixed(0);
  return rate.toFixed(1);
}
