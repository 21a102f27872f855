// connections.js: ramp to N concurrent event streams, hold them while
// heartbeats flow, and report the peak held (sse_connections_peak) and
// errors. Streams watch orders that never get an event, so all they carry is
// the retry: frame and heartbeats.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e N=10000 -e RAMP=30s -e HOLD=30s connections.js
//
// N streams, PER_VU per VU (several per VU is what lets one k6 process reach
// high counts), STREAMS_PER_ORDER subscribers per order. HOLD must be longer
// than the server's HEARTBEAT_INTERVAL (default 15s) for the heartbeat check.
import sse from "k6/x/sse";
import exec from "k6/execution";
import { check } from "k6";
import { int, ms, streamURL, streamOptions, trendStats } from "./lib.js";

const N = int("N", 10000);
const PER_VU = Math.max(1, Math.min(int("PER_VU", 200), N));
const RAMP = ms("RAMP", "30s");
const HOLD = ms("HOLD", "30s");
const STREAMS_PER_ORDER = Math.max(1, int("STREAMS_PER_ORDER", 100));
// Each held stream must see at least this many heartbeats (0: don't check).
const MIN_HEARTBEATS = int("MIN_HEARTBEATS", 1);
// Request to response headers, 99th percentile, in milliseconds.
const CONNECT_P99_MS = int("CONNECT_P99_MS", 5000);
const VUS = Math.ceil(N / PER_VU);

export const options = {
  scenarios: {
    streams: {
      executor: "per-vu-iterations",
      vus: VUS,
      iterations: 1,
      maxDuration: `${Math.ceil((RAMP + HOLD) / 1000) + 60}s`,
      gracefulStop: "10s",
    },
  },
  summaryTrendStats: trendStats,
  thresholds: {
    // The peak: every stream open at once.
    sse_connections_peak: [`value>=${N}`],
    sse_errors: ["count==0"],
    sse_reconnects: ["count==0"],
    sse_heartbeats: [`count>=${N * MIN_HEARTBEATS}`],
    sse_connecting: [`p(99)<${CONNECT_P99_MS}`],
    checks: ["rate==1"],
  },
};

export default async function () {
  const vu = exec.scenario.iterationInTest; // 0 .. VUS-1, one iteration each
  const count = Math.min(PER_VU, N - vu * PER_VU);
  const orders = [];
  for (let i = 0; i < Math.ceil(count / STREAMS_PER_ORDER); i++) orders.push(streamURL(crypto.randomUUID()));

  // Every VU spreads its opens over the whole ramp, so together they climb
  // linearly to N; then all of them are held for HOLD.
  const h = sse.open(orders, streamOptions({ count, spread: RAMP }));
  const st = await h.finished(RAMP + HOLD);
  check(st, {
    "every stream still open after the hold": (s) => s.open === count,
    "every stream saw a heartbeat": (s) => MIN_HEARTBEATS === 0 || s.heartbeats >= count * MIN_HEARTBEATS,
  });
  h.close();
}

export function teardown() {
  const s = sse.stats();
  console.log(`peak streams held by this k6 process: ${s.peak} of ${N}; errors ${s.errors} ${JSON.stringify(s.errorsByReason)}, reconnects ${s.reconnects}, heartbeats ${s.heartbeats}`);
}
