// latency.js: S subscribers spread over K orders, then a publisher starts a
// simulation of every order (POST /orders/{id}/simulate?interval=INTERVAL),
// which publishes Created..Delivered. Reports the event latency (the
// update's server timestamp to receipt: sse_event_latency p50/p95/p99) and
// deliveries per second (sse_deliveries_per_second). INTERVAL=0s publishes
// every order's statuses at once: the fan-out at full speed.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e S=10000 -e K=100 -e INTERVAL=1s latency.js
//
// Latency compares two clocks: against a deployment it is only as good as
// the clock sync between it and this machine.
import sse from "k6/x/sse";
import http from "k6/http";
import exec from "k6/execution";
import { check } from "k6";
import { Gauge } from "k6/metrics";
import { int, ms, str, trendStats, startSimulations, STATUSES_PER_ORDER, subscribersAndPublisher, newOrders, subscribeUntilDone } from "./lib.js";

const S = int("S", 1000);
const K = Math.max(1, Math.min(int("K", 100), S));
const PER_VU = Math.max(1, Math.min(int("PER_VU", 200), S));
const INTERVAL = str("INTERVAL", "1s");
const SPREAD = ms("SPREAD", "1s"); // simulations start evenly over this long
const RAMP = ms("RAMP", "10s"); // subscribers connect over this long
const P99 = int("P99_MS", 500);
const VUS = Math.ceil(S / PER_VU);
const LIFE = ms("INTERVAL", "1s") * (STATUSES_PER_ORDER - 1);
const MAX = Math.ceil((RAMP + SPREAD + LIFE) / 1000) + 60;

const deliveries = new Gauge("sse_deliveries_per_second");

export const options = {
  scenarios: subscribersAndPublisher(VUS, RAMP, 2, MAX),
  setupTimeout: "30s",
  summaryTrendStats: trendStats,
  thresholds: {
    sse_event_latency: [`p(99)<${P99}`],
    sse_events: [`count>=${S * STATUSES_PER_ORDER}`],
    sse_streams_completed: [`count>=${S}`],
    sse_gaps: ["count==0"],
    sse_duplicates: ["count==0"],
    sse_errors: ["count==0"],
    http_req_failed: ["rate==0"],
    checks: ["rate==1"],
  },
};

export function setup() {
  return newOrders(K);
}

// subscribe: stream i of the test watches order i % K, so each order has S/K subscribers.
export async function subscribe(data) {
  await subscribeUntilDone(sse, check, data, exec.scenario.iterationInTest, PER_VU, S, { spread: RAMP, expectSequence: true }, MAX);
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
  deliveries.add(s.deliveriesPerSecond);
  console.log(`deliveries: ${s.events - s.replayed} live events in ${s.windowSeconds.toFixed(3)} s = ${Math.round(s.deliveriesPerSecond)}/s; replayed ${s.replayed}, gaps ${s.gaps}, duplicates ${s.duplicates}, errors ${s.errors} ${JSON.stringify(s.errorsByReason)}`);
}
