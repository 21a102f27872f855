// rolling.js: S subscribers through a proxy in front of several instances
// while run.sh restarts every instance in turn and kills one (run.sh
// rolling). One publisher walks K orders through Created..Delivered, one
// status every STEP for all of them, so that every restart falls in the
// middle of the orders' lives. Every subscriber must see every status
// exactly once, in order, whatever instance it lands on: 0 gaps, 0
// duplicates. Reconnects, their time (sse_reconnect_time) and connect
// errors are the figures.
//
//   k6 run -e BASE=http://127.0.0.1:8080 -e S=15000 -e K=1500 -e STEP=15s rolling.js
import sse from "k6/x/sse";
import http from "k6/http";
import exec from "k6/execution";
import { check, sleep } from "k6";
import { BASE, int, ms, trendStats, STATUSES_PER_ORDER, subscribersAndPublisher, newOrders, subscribeUntilDone, bodyHeaders } from "./lib.js";

const S = int("S", 15000);
const K = Math.max(1, Math.min(int("K", 1500), S));
const PER_VU = Math.max(1, Math.min(int("PER_VU", 500), S));
const RAMP = ms("RAMP", "60s");
const STEP = ms("STEP", "15s");
const VUS = Math.ceil(S / PER_VU);
const STATUSES = ["Created", "PaymentConfirmed", "Packed", "Shipped", "OutForDelivery", "Delivered"];
const MAX = Math.ceil((RAMP + STEP * STATUSES.length) / 1000) + 120;

export const options = {
  scenarios: subscribersAndPublisher(VUS, RAMP, 2, MAX),
  setupTimeout: "30s",
  summaryTrendStats: trendStats,
  thresholds: {
    sse_gaps: ["count==0"],
    sse_duplicates: ["count==0"],
    sse_events: [`count==${S * STATUSES_PER_ORDER}`],
    sse_streams_completed: [`count==${S}`],
    checks: ["rate==1"],
    // Reported, not judged: connect errors (sse_errors by reason), reconnects
    // and sse_reconnect_time are what differs between the runs.
  },
};

export function setup() {
  return newOrders(K);
}

export async function subscribe(data) {
  // The server's retry: (RETRY_INTERVAL, RETRY_JITTER) paces reconnects, as in a browser.
  await subscribeUntilDone(sse, check, data, exec.scenario.iterationInTest, PER_VU, S, { spread: RAMP, expectSequence: true }, MAX);
}

// publishOnce publishes status, retrying until it is sure the status was
// accepted once: after an error or a 5xx the instance may have accepted it
// before it went away, so the order's latest status decides.
function publishOnce(id, status) {
  const url = `${BASE}/orders/${id}`;
  for (let attempt = 0; attempt < 150; attempt++) {
    const body = JSON.stringify({ status });
    const res = http.post(`${url}/events`, body, {
      headers: bodyHeaders(body, { "Content-Type": "application/json" }),
      tags: { name: "POST /orders/{id}/events" },
      responseCallback: http.expectedStatuses(201, 409, 502, 503, 504),
    });
    if (res.status === 201) return true;
    const latest = http.get(url, { tags: { name: "GET /orders/{id}" }, responseCallback: http.expectedStatuses(200, 404, 502, 503, 504) });
    if (latest.status === 200 && latest.json("status") === status) return true;
    if (res.status !== 0 && res.status < 500 && res.status !== 409) return false;
    sleep(0.2);
  }
  return false;
}

export function publish(data) {
  let ok = 0;
  for (const status of STATUSES) {
    const round = Date.now();
    for (let i = 0; i < data.orders.length; i++) {
      if (publishOnce(data.orders[i], status)) ok++;
      // Spread the round over STEP.
      const due = round + (STEP * (i + 1)) / data.orders.length;
      const wait = due - Date.now();
      if (wait > 1) sleep(wait / 1000);
    }
  }
  check(ok, { "every status of every order was published once": (n) => n === K * STATUSES.length });
}

export function teardown() {
  const s = sse.stats();
  console.log(`rolling: ${s.reconnects} reconnects, ${s.events} events, gaps ${s.gaps}, duplicates ${s.duplicates}, errors ${s.errors} ${JSON.stringify(s.errorsByReason)}`);
}
