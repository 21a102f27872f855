// resume.js: subscribers whose connections are cut at random (every
// DROP_MIN..DROP_MAX) and resumed with Last-Event-ID while their orders'
// simulations run. Every subscriber must see Created..Delivered exactly
// once: 0 gaps, 0 duplicates.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e S=1000 -e K=100 -e INTERVAL=1s resume.js
import sse from "k6/x/sse";
import http from "k6/http";
import exec from "k6/execution";
import { check } from "k6";
import { int, ms, str, trendStats, startSimulations, STATUSES_PER_ORDER, subscribersAndPublisher, newOrders, subscribeUntilDone } from "./lib.js";

const S = int("S", 1000);
const K = Math.max(1, Math.min(int("K", 100), S));
const PER_VU = Math.max(1, Math.min(int("PER_VU", 200), S));
const INTERVAL = str("INTERVAL", "1s");
const SPREAD = ms("SPREAD", "1s");
const RAMP = ms("RAMP", "5s");
const DROP_MIN = ms("DROP_MIN", "100ms");
const DROP_MAX = ms("DROP_MAX", "1500ms");
// How long a cut subscriber waits before it resumes (the server's retry: is 3s).
const RECONNECT_DELAY = ms("RECONNECT_DELAY", "50ms");
const VUS = Math.ceil(S / PER_VU);
const LIFE = ms("INTERVAL", "1s") * (STATUSES_PER_ORDER - 1);
const MAX = Math.ceil((RAMP + SPREAD + LIFE) / 1000) + 60;

export const options = {
  scenarios: subscribersAndPublisher(VUS, RAMP, 1, MAX),
  setupTimeout: "30s",
  summaryTrendStats: trendStats,
  thresholds: {
    sse_gaps: ["count==0"],
    sse_duplicates: ["count==0"],
    sse_errors: ["count==0"],
    sse_events: [`count==${S * STATUSES_PER_ORDER}`],
    sse_streams_completed: [`count==${S}`],
    // The test means nothing unless connections were actually cut.
    sse_reconnects: [`count>=${S}`],
    http_req_failed: ["rate==0"],
    checks: ["rate==1"],
  },
};

export function setup() {
  return newOrders(K);
}

export async function subscribe(data) {
  await subscribeUntilDone(sse, check, data, exec.scenario.iterationInTest, PER_VU, S, {
    spread: RAMP,
    expectSequence: true,
    dropAfter: [DROP_MIN, DROP_MAX],
    reconnectDelay: RECONNECT_DELAY,
  }, MAX);
}

export async function publish(data) {
  const res = await startSimulations(http, data.orders, INTERVAL, SPREAD);
  check(res, {
    "every simulation published Created..Delivered": (rs) =>
      rs.every((r) => r.status === 200 && r.json("published") === STATUSES_PER_ORDER),
  });
}

export function teardown() {
  const s = sse.stats();
  console.log(`resume: ${s.reconnects} reconnects, ${s.events} events (${s.replayed} replayed from history), gaps ${s.gaps}, duplicates ${s.duplicates}, errors ${s.errors} ${JSON.stringify(s.errorsByReason)}`);
}
