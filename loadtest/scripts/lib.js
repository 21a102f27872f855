// Shared by the orderstream load scripts: settings from -e variables, URLs.

import { sha256 } from "k6/crypto";

// BASE is the service under test: the local server `make loadtest` starts,
// or a deployment (TARGET=https://... make loadtest).
export const BASE = (__ENV.BASE || "http://127.0.0.1:8080").replace(/\/+$/, "");

export function int(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === "") return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${v}: want a whole number`);
  return n;
}

export function str(name, def) {
  const v = __ENV[name];
  return v === undefined || v === "" ? def : v;
}

// ms turns a Go-style duration ("1500ms", "30s", "2m", "1m30s") into milliseconds.
export function ms(name, def) {
  const v = str(name, def);
  if (/^\d+$/.test(v)) return Number(v);
  let total = 0;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let m, seen = "";
  while ((m = re.exec(v)) !== null) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60000, h: 3600000 }[m[2]];
    seen += m[0];
  }
  if (seen !== v) throw new Error(`${name}=${v}: want a duration such as 500ms, 30s or 2m`);
  return total;
}

export const streamURL = (id) => `${BASE}/orders/${id}/stream`;
export const simulateURL = (id, interval) => `${BASE}/orders/${id}/simulate?interval=${interval}`;

// bodyHeaders are a write's headers: its body's SHA-256, which a function
// URL behind CloudFront (origin access control signs the request) needs and
// every other deployment ignores.
export function bodyHeaders(body, headers = {}) {
  return Object.assign({ "x-amz-content-sha256": sha256(body || "", "hex") }, headers);
}

export const trendStats = ["avg", "min", "med", "p(95)", "p(99)", "max"];

// Statuses a simulation publishes: Created through Delivered.
export const STATUSES_PER_ORDER = 6;

export function sleepAsync(msec) {
  return new Promise((resolve) => setTimeout(resolve, msec));
}

// startSimulations posts one simulation per order, starting them evenly over
// spreadMs, and resolves with the responses once all have answered (a
// simulation answers when it has published Delivered).
export async function startSimulations(http, orders, interval, spreadMs) {
  const pending = [];
  const t0 = Date.now();
  for (let i = 0; i < orders.length; i++) {
    const due = t0 + (spreadMs * i) / orders.length;
    const wait = due - Date.now();
    if (wait > 1) await sleepAsync(wait);
    pending.push(
      http.asyncRequest("POST", simulateURL(orders[i], interval), null, {
        headers: bodyHeaders(""),
        tags: { name: "POST /orders/{id}/simulate" },
        timeout: "120s",
      }),
    );
  }
  return Promise.all(pending);
}

// streamOptions adds what every script takes from the environment to
// sse.open's options: SOURCE_ADDRS=127.0.0.2,127.0.0.3 dials from several
// loopback addresses in turn (each has its own ~28k ephemeral ports towards
// one server address), the wall after the open-file limit.
export function streamOptions(opts) {
  const src = str("SOURCE_ADDRS", "");
  if (src !== "") opts.sourceAddrs = src.split(",").map((s) => s.trim()).filter((s) => s !== "");
  return opts;
}

// subscribersAndPublisher is the scenarios of latency.js and resume.js: vus
// VUs that each subscribe once, and one publisher that starts when the
// subscribers have ramped up (rampMs) plus startAfter seconds; both may run
// for maxSeconds.
export function subscribersAndPublisher(vus, rampMs, startAfter, maxSeconds) {
  return {
    subscribers: {
      executor: "per-vu-iterations",
      exec: "subscribe",
      vus: vus,
      iterations: 1,
      maxDuration: `${maxSeconds}s`,
    },
    publisher: {
      executor: "per-vu-iterations",
      exec: "publish",
      vus: 1,
      iterations: 1,
      startTime: `${Math.ceil(rampMs / 1000) + startAfter}s`,
      maxDuration: `${maxSeconds}s`,
    },
  };
}

// newOrders is setup() of latency.js and resume.js: k fresh order ids.
export function newOrders(k) {
  const orders = [];
  for (let i = 0; i < k; i++) orders.push(crypto.randomUUID());
  return { orders };
}

// subscribeUntilDone is the subscribe() of the scripts: this VU's share of
// the s subscribers (subscriberURLs), opened with opts, until every one has
// seen its order end (or maxSeconds pass), checked.
export async function subscribeUntilDone(sse, check, data, vu, perVU, s, opts, maxSeconds) {
  const urls = subscriberURLs(data.orders, vu, perVU, s);
  const count = urls.length;
  const h = sse.open(urls, streamOptions(Object.assign({ count }, opts)));
  const st = await h.finished((maxSeconds - 5) * 1000);
  check(st, { "every subscriber saw its order delivered": (x) => x.completed === count });
  h.close();
}

// subscriberURLs are the streams of the VU with index vu: up to perVU of
// the s subscribers, stream i of the test watching order i % orders.length,
// so that each order has s/orders.length subscribers.
export function subscriberURLs(orders, vu, perVU, s) {
  const first = vu * perVU;
  const count = Math.min(perVU, s - first);
  const urls = [];
  for (let i = 0; i < count; i++) urls.push(streamURL(orders[(first + i) % orders.length]));
  return urls;
}

