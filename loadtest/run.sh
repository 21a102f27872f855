#!/usr/bin/env bash
# Runs the k6 load suite (or the baseline comparison) against a local server
# it starts, or against TARGET. Called by loadtest.mk; see loadtest/README.md.
#
#   run.sh smoke      a few hundred streams, tens of seconds (make test)
#   run.sh laptop     the suite at a size one machine takes (make loadtest)
#   run.sh baseline   orderstream against the raw fan-out server (make loadtest-baseline)
#   run.sh figures    the load figures of docs/performance.md in one run: orderstream and the three
#                     raw forms in the contract's rounds, a table and the charts (make loadtest-figures)
#   run.sh scale      N (100,000) streams over several instances sharing a redis-server (make loadtest-scale)
#   run.sh rolling    S (15,000) streams through nginx over three instances, restarted in turn and one killed (make loadtest-rolling)
#
# Sizes come from the environment (N, S, K, INTERVAL, RAMP, HOLD, ...; see
# each script's header); RUNS="connections latency" picks runs of the laptop
# profile (connections latency latency-burst resume); the figures run takes
# SERVERS, HOLD_N, ROUNDS_RUNS and EXTRA_RUNS (see figures_run); the scale run takes INSTANCES, N, RAMP, HOLD
# and K6_GOGC; TARGET=https://... runs
# against a deployment instead of a local server; RESULTS_NAME names the
# results folder.
set -euo pipefail

profile=${1:?usage: run.sh smoke|laptop|baseline|figures|scale|rolling}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
K6=$here/bin/k6
# k6's verdicts are read from its JSON summaries.
command -v jq >/dev/null || { echo "loadtest: jq is missing (make jq, or apt-get install jq)" >&2; exit 2; }
SERVER=$here/bin/orderstream
BASELINE=$here/bin/baseline
# The raw server's shape in the baseline profile (baseline serve -shape):
# loop, goroutine or writev. The figures profile runs all three.
RAW_SHAPE=${RAW_SHAPE:-loop}
TARGET=${TARGET:-}
if [ -n "$TARGET" ]; then
	run_name=${RESULTS_NAME:-target-$(echo "$TARGET" | sed -E 's#^[a-z]+://##; s#[^A-Za-z0-9.-]+#_#g')}
else
	run_name=${RESULTS_NAME:-$profile}
fi
RESULTS=$here/results/$run_name
mkdir -p "$RESULTS"

# Each stream is an open file on both ends: take all the kernel lets us.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then ulimit -n "$hard"; fi
fd_cap=$(( $(ulimit -n) - 150 ))
cap() { # cap NAME: keep a stream count within one process's open files
	local v=${!1}
	if [ "$v" -gt "$fd_cap" ]; then
		echo "loadtest: $1=$v is over what one process may open here (ulimit -n $(ulimit -n)); using $fd_cap" >&2
		printf -v "$1" %s "$fd_cap"
	fi
}

pids=()
samplers=()
cleanup() {
	local p
	for p in "${samplers[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs a server on a free loopback port, which it writes
# to the file named by ADDR_FILE once listening, and sets BASE and PID.
start() {
	local name=$1 log=$RESULTS/$1.log addrfile=$RESULTS/$1.addr addr="" i
	shift
	rm -f "$addrfile"
	ADDR_FILE=$addrfile "$@" >"$log" 2>&1 &
	PID=$!
	pids+=("$PID")
	for i in $(seq 100); do
		[ -s "$addrfile" ] && { read -r addr <"$addrfile"; break; }
		kill -0 "$PID" 2>/dev/null || { cat "$log" >&2; echo "loadtest: $name did not start" >&2; return 1; }
		sleep 0.1
	done
	[ -n "$addr" ] || { echo "loadtest: $name did not write its address to $addrfile" >&2; return 1; }
	BASE=http://$addr
	healthy "$addr" || { echo "loadtest: $name at $BASE is not healthy" >&2; return 1; }
	echo "loadtest: $name serving on $BASE (pid $PID, log $log)"
}

healthy() { # healthy HOST:PORT, without curl
	local host=${1%:*} port=${1##*:} line
	exec 3<>"/dev/tcp/$host/$port" || return 1
	printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
	read -r line <&3 || true
	exec 3<&-
	[[ $line == *" 200 "* ]]
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# sample PID FILE: records the process's RSS (kB) every 200 ms until stopped.
sample() {
	( while kill -0 "$1" 2>/dev/null; do rss_kb "$1"; sleep 0.2; done ) >"$2" &
	samplers+=("$!")
}
stop_samplers() {
	local p
	for p in "${samplers[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	samplers=()
}
max_of() { sort -n "$1" | tail -1; }
# free_port FIRST: the first loopback port from FIRST on that nobody listens on.
free_port() {
	local p
	for p in $(seq "$1" $(($1 + 100))); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	echo "loadtest: no free port from $1" >&2
	return 1
}

# start_redis: a redis-server on a free port, its data in a temporary
# folder removed on exit; sets REDIS_URL.
start_redis() {
	command -v redis-server >/dev/null || { echo "loadtest: redis-server is missing (make redis-server)" >&2; exit 2; }
	local port l
	port=$(free_port 16379)
	tmp=$(mktemp -d)
	trap 'cleanup; rm -rf "$tmp"' EXIT
	redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp" --save "" --appendonly no \
		--maxclients 1000 >"$RESULTS/redis.log" 2>&1 &
	pids+=("$!")
	for _ in $(seq 50); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 && read -r -t 1 l <&3 && [[ $l == +PONG* ]]) 2>/dev/null; then break; fi
		sleep 0.1
	done
	REDIS_URL=redis://127.0.0.1:$port
	echo "loadtest: redis-server at $REDIS_URL (pid $!, data in $tmp)"
}

# nginx_start UPSTREAM...: nginx with deploy/nginx's files, changed only
# where a local run must (addresses, a plain-HTTP listener serving the API
# instead of redirecting, no certificate, open-file limits for many
# streams), in $RESULTS/nginx; sets BASE.
nginx_start() {
	local bin dir=$RESULTS/nginx port i=0 u
	bin=$(command -v nginx || echo /usr/sbin/nginx)
	[ -x "$bin" ] || { echo "loadtest: nginx is missing (make nginx)" >&2; exit 2; }
	mkdir -p "$dir"
	port=$(free_port 18080)
	cp "$here/../deploy/nginx/orderstream-locations.conf" "$dir/locations.conf"
	# Only the plain-HTTP server, listening here and serving the API.
	sed -E '/^# Browsers: TLS/,/^}/d' "$here/../deploy/nginx/orderstream.conf" |
		sed -E "s#listen 80;#listen 127.0.0.1:$port reuseport;#; s#return 308 .*#include $dir/locations.conf;#" >"$dir/site.conf"
	for u in "$@"; do
		sed -i -E "s#server 127\.0\.0\.1:$((8081 + i)) #server $u #" "$dir/site.conf"
		i=$((i + 1))
	done
	cat >"$dir/nginx.conf" <<-CONF
		daemon off;
		worker_processes 2;
		worker_rlimit_nofile $(ulimit -n);
		pid $dir/nginx.pid;
		error_log $dir/error.log warn;
		events { worker_connections $(($(ulimit -n) - 100)); }
		http {
		    access_log off;
		    client_body_temp_path $dir/body;
		    proxy_temp_path $dir/proxy;
		    fastcgi_temp_path $dir/fastcgi;
		    uwsgi_temp_path $dir/uwsgi;
		    scgi_temp_path $dir/scgi;
		    include $dir/site.conf;
		}
	CONF
	"$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -t 2>&1 | sed 's/^/nginx: /'
	"$bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" &
	pids+=("$!")
	# Listening is enough: a request through it before the instances listen
	# would mark them failed (max_fails), and streams are slow probes back.
	for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
	BASE=http://127.0.0.1:$port
	echo "loadtest: nginx on $BASE in front of $*"
}

# rolling_run MODE ENV...: one rolling run: three instances (ENV added to
# their environment) behind nginx, rolling.js through it, and meanwhile
# every instance restarted in turn with SIGTERM, SPACING_S seconds apart,
# then the first killed with SIGKILL. The epoch seconds of each step go to
# rolling-MODE-phases.txt (t0 first: the whole second the connects are
# counted from, just before the first SIGTERM), which the chart marks; the
# successful connects per second since t0 to rolling-MODE-connects.json.
rolling_run() {
	local mode=$1 label=rolling-$1 i rc storm next k6pid
	shift
	local env=(REDIS_URL="$REDIS_URL" HEARTBEAT_INTERVAL=15s "$@")
	for i in 0 1 2; do
		start "$label-$i" env ADDR="${upstreams[$i]}" "${env[@]}" "$SERVER"
		ipids[i]=$PID
	done
	echo
	echo "=== $label: $S streams over $K orders through nginx; instance env: $*"
	box "$label"
	K6_NO_USAGE_REPORT=true "$K6" run --address= --quiet --no-color \
		--summary-export "$RESULTS/$label.json" --out "json=$RESULTS/$label-samples.json.gz" \
		-e BASE="$NGINX" -e S="$S" -e K="$K" -e PER_VU=500 -e RAMP="$((RAMP_S * 1000))" -e STEP="$((STEP_S * 1000))" \
		scripts/rolling.js >"$RESULTS/$label.txt" 2>&1 &
	k6pid=$!
	pids+=("$k6pid")
	: >"$RESULTS/$label-phases.txt"
	# The restarts fall mid-way through the orders' lives: after the ramp
	# and the publisher's first round.
	sleep $((RAMP_S + 2 + STEP_S))
	storm=$(date +%s)
	echo "$storm t0" >>"$RESULTS/$label-phases.txt"
	for i in 0 1 2; do
		next=$((SECONDS + SPACING_S))
		echo "$(date +%s.%N) sigterm $i" >>"$RESULTS/$label-phases.txt"
		kill -TERM "${ipids[$i]}"
		rc=0
		wait "${ipids[$i]}" || rc=$?
		[ "$rc" -eq 0 ] || failed+=("$label-$i (exit $rc after SIGTERM)")
		echo "$(date +%s.%N) exited $i" >>"$RESULTS/$label-phases.txt"
		start "$label-$i-restarted" env ADDR="${upstreams[$i]}" "${env[@]}" "$SERVER"
		ipids[i]=$PID
		echo "$(date +%s.%N) healthy $i" >>"$RESULTS/$label-phases.txt"
		while [ "$SECONDS" -lt "$next" ]; do sleep 1; done
	done
	echo "$(date +%s.%N) sigkill 0" >>"$RESULTS/$label-phases.txt"
	kill -KILL "${ipids[0]}"
	wait "${ipids[0]}" 2>/dev/null || true
	rc=0
	wait "$k6pid" || rc=$?
	ran+=("$label")
	[ "$rc" -eq 0 ] || failed+=("$label (k6 exit $rc)")
	for i in 1 2; do kill -TERM "${ipids[$i]}"; wait "${ipids[$i]}" || true; done
	# Successful connects (each sse_connecting sample is a 200) per second,
	# from the first SIGTERM on.
	zcat "$RESULTS/$label-samples.json.gz" | grep '"metric":"sse_connecting"' | grep '"type":"Point"' |
		jq -s --argjson storm "$storm" '
			map(.data.time | sub("\\.[0-9]+"; "") | sub("(?<z>[+-][0-9]{2}):?(?<m>[0-9]{2})$"; "Z") | fromdate - $storm)
			| map(select(. >= -10)) | group_by(.) | map({t: .[0], n: length})' >"$RESULTS/$label-connects.json"
	rm -f "$RESULTS/$label-samples.json.gz"
	jq --arg mode "$mode" --arg env "$*" --slurpfile c "$RESULTS/$label-connects.json" '{
		mode: $mode,
		instanceEnv: $env,
		streams: .metrics.sse_streams_completed.count,
		events: .metrics.sse_events.count,
		reconnects: .metrics.sse_reconnects.count,
		gaps: .metrics.sse_gaps.count,
		duplicates: .metrics.sse_duplicates.count,
		connectErrors: .metrics.sse_errors.count,
		reconnectP50ms: .metrics.sse_reconnect_time.med,
		reconnectP99ms: .metrics.sse_reconnect_time["p(99)"],
		reconnectMaxms: .metrics.sse_reconnect_time.max,
		peakConnectsPerSecondInStorm: ($c[0] | map(select(.t >= 0) | .n) | max),
		thresholdsCrossed: ([.metrics[].thresholds // {} | to_entries[] | select(.value)] | length)
	}' "$RESULTS/$label.json" | tee "$RESULTS/$label-summary.json"
}

# k6_running PID...: whether any of the processes still runs.
k6_running() {
	local p
	for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
	return 1
}

# want RUN: whether RUNS (default: all of them) names this run.
want() { [ -z "${RUNS:-}" ] || [[ " $RUNS " == *" $1 "* ]]; }

# box LABEL: how busy the machine was before a measurement (other work on
# the shared cores moves every figure; the CPU-time figures least).
box() {
	local psi=""
	[ -r /proc/pressure/cpu ] && psi=", cpu pressure avg10 $(sed -n 's/^some avg10=\([^ ]*\).*/\1/p' /proc/pressure/cpu)%"
	echo "box before $1: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores$psi" | tee -a "$RESULTS/box.txt"
}

failed=()
ran=()
# k6run LABEL SCRIPT [k6 args...]: one run, its summary printed and kept as
# LABEL.txt, LABEL.json (--summary-export) and LABEL.html (web dashboard).
k6run() {
	local label=$1 script=$2 rc=0
	shift 2
	echo
	echo "=== $label: k6 run scripts/$script.js $*"
	box "$label"
	K6_NO_USAGE_REPORT=true \
		K6_WEB_DASHBOARD=true \
		K6_WEB_DASHBOARD_HOST=127.0.0.1 \
		K6_WEB_DASHBOARD_PORT=0 \
		K6_WEB_DASHBOARD_PERIOD=${DASHBOARD_PERIOD:-1s} \
		K6_WEB_DASHBOARD_EXPORT="$RESULTS/$label.html" \
		"$K6" run --address= ${K6_QUIET:+--quiet} --no-color \
		--summary-export "$RESULTS/$label.json" \
		-e BASE="$BASE" "$@" "scripts/$script.js" 2>&1 | tee "$RESULTS/$label.txt" || rc=$?
	ran+=("$label")
	if [ "$rc" -ne 0 ]; then failed+=("$label (exit $rc)"); fi
	return 0
}

# crossed LABEL METRIC: whether one of METRIC's thresholds failed in LABEL's
# summary export (k6 writes each threshold as "expression": true when crossed).
crossed() {
	jq -e --arg m "$2" '[.metrics[$m].thresholds // {} | .[] | select(.)] | length > 0' "$RESULTS/$1.json" >/dev/null
}

# must_fail LABEL METRIC SCRIPT [k6 args...]: a run against a server that
# misbehaves on purpose; it passes only if k6 fails it on METRIC's threshold,
# which shows that the threshold can fail at all.
must_fail() {
	local label=$1 metric=$2 script=$3 n=${#failed[@]}
	shift 3
	k6run "$label" "$script" "$@"
	if [ "${#failed[@]}" -eq "$n" ]; then
		failed+=("$label (k6 passed a server that misbehaves on purpose)")
	elif crossed "$label" "$metric"; then
		failed=("${failed[@]:0:$n}")
		echo "loadtest: $label failed on $metric, as it must"
	else
		failed[n]="$label (failed, but not on $metric)"
	fi
}

report() {
	echo
	echo "=== results in ${RESULTS#"$here"/}/ (summary .txt, --summary-export .json, dashboard .html)"
	local l
	for l in "${ran[@]}"; do
		if printf '%s\n' "${failed[@]}" | grep -q "^$l "; then echo "  FAIL $l"; else echo "  ok   $l"; fi
	done
	[ -f "$RESULTS/memory.txt" ] && sed 's/^/  /' "$RESULTS/memory.txt"
	if [ "${#failed[@]}" -gt 0 ]; then
		echo "loadtest: failed: ${failed[*]}" >&2
		exit 1
	fi
}

# serve_local: the service as `make run` builds it, on a free port, with
# short heartbeats so that a short hold sees several.
serve_local() {
	if [ -n "$TARGET" ]; then
		BASE=${TARGET%/}
		echo "loadtest: against $BASE (no local server)"
		return
	fi
	start orderstream env ADDR=127.0.0.1:0 HEARTBEAT_INTERVAL="$HEARTBEAT_INTERVAL" "$SERVER"
	SERVER_PID=$PID
}

# connections_with_memory: connections.js, sampling the local server's RSS.
connections_with_memory() {
	local label=$1
	shift
	if [ -n "$TARGET" ]; then
		k6run "$label" connections "$@"
		return
	fi
	local idle
	idle=$(rss_kb "$SERVER_PID")
	sample "$SERVER_PID" "$RESULTS/$label.rss"
	k6run "$label" connections "$@"
	stop_samplers
	local peak
	peak=$(max_of "$RESULTS/$label.rss")
	awk -v idle="$idle" -v peak="$peak" -v n="$N" -v label="$label" 'BEGIN {
		printf "%s: orderstream RSS %.1f MiB idle, %.1f MiB peak with %d streams: %.1f KiB per stream\n",
			label, idle/1024, peak/1024, n, (peak-idle)/n }' | tee -a "$RESULTS/memory.txt"
}

# pinning: where the servers and the load generator run. With 4 cores or
# more, the servers get the first half of the cores this script may use and
# the load generator the rest (taskset), so that they never take each other's
# cores; with fewer they share them, and the results say so (pinning.txt).
# SERVER_CPUS and CLIENT_CPUS (taskset lists) choose by hand; PIN=0 turns it off.
pinning() {
	local cpus=() r lo hi i half
	for r in $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status | tr ',' ' '); do
		lo=${r%-*} hi=${r#*-}
		for ((i = lo; i <= hi; i++)); do cpus+=("$i"); done
	done
	SERVER_PIN=() CLIENT_PIN=()
	if [ "${PIN:-1}" = 0 ]; then
		PINNING="not pinned (PIN=0): the servers and the load generator share the ${#cpus[@]} cores"
	elif [ -n "${SERVER_CPUS:-}" ] && [ -n "${CLIENT_CPUS:-}" ]; then
		PINNING="servers on cores $SERVER_CPUS, the load generator on cores $CLIENT_CPUS (taskset, by hand)"
	elif [ "${#cpus[@]}" -ge 4 ]; then
		half=$((${#cpus[@]} / 2))
		SERVER_CPUS=$(IFS=,; echo "${cpus[*]:0:half}")
		CLIENT_CPUS=$(IFS=,; echo "${cpus[*]:half}")
		PINNING="servers on cores $SERVER_CPUS, the load generator on cores $CLIENT_CPUS (taskset; ${#cpus[@]} cores)"
	else
		PINNING="not pinned: ${#cpus[@]} cores, so the load generator shares the servers' cores (reading an event costs it about what writing it costs a server)"
	fi
	if [[ $PINNING == servers* ]]; then
		command -v taskset >/dev/null || { echo "loadtest: taskset is missing (util-linux); PIN=0 runs unpinned" >&2; exit 2; }
		SERVER_PIN=(taskset -c "$SERVER_CPUS") CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
	fi
	echo "$PINNING" | tee "$RESULTS/pinning.txt"
}

# serve_fresh NAME LABEL: a fresh server for one run (so that no run's
# memory carries into the next): orderstream, or raw-loop, raw-goroutine,
# raw-writev (baseline serve -shape); sets BASE and PID. orderstream as
# `make run` starts it, but for SHUTDOWN_DRAIN=0s: stopped with no stream
# open, it would still wait out the drain.
serve_fresh() {
	case $1 in
	orderstream) start "$2.$1" env ADDR=127.0.0.1:0 HEARTBEAT_INTERVAL="$HEARTBEAT_INTERVAL" SHUTDOWN_DRAIN=0s "${SERVER_PIN[@]}" "$SERVER" ;;
	# Another build of orderstream, loadtest/bin/orderstream-NAME (a commit
	# before a change, say), in a column of its own: the same run measures
	# both builds against the same raw forms.
	orderstream-*)
		[ -x "$here/bin/$1" ] || { echo "loadtest: SERVERS has $1, but loadtest/bin/$1 is missing" >&2; exit 2; }
		start "$2.$1" env ADDR=127.0.0.1:0 HEARTBEAT_INTERVAL="$HEARTBEAT_INTERVAL" SHUTDOWN_DRAIN=0s "${SERVER_PIN[@]}" "$here/bin/$1" ;;
	raw-*) start "$2.$1" "${SERVER_PIN[@]}" "$BASELINE" serve -heartbeat "$HEARTBEAT_INTERVAL" -shape "${1#raw-}" ;;
	*) echo "loadtest: SERVERS takes orderstream, orderstream-NAME (loadtest/bin/orderstream-NAME), raw-goroutine, raw-writev and raw-loop, not $1" >&2; exit 2 ;;
	esac
}

# stop_server PID: SIGTERM, and SIGKILL if it has not exited within 30 s.
stop_server() {
	local i p rest=()
	kill -TERM "$1" 2>/dev/null || true
	for i in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || rest+=("$p"); done
	pids=("${rest[@]}")
}

# figures_run: every server of SERVERS measured by the same client
# (baseline bench), one run after another with the same sizes, each run
# against a fresh server process:
#   hold         HOLD_N idle streams held HOLD_FOR, RSS read in HOLD_STEPS steps
#   ROUNDS_RUNS  and EXTRA_RUNS: the contract's rounds, each KxM@INTERVAL*R:
#                K fresh orders with M streams each, every order's six
#                statuses at once (0s) or one per INTERVAL, R rounds
# Each writes RUN.SERVER.json (and .txt); then baseline table writes
# figures.md and figures.json, and the charts are drawn.
figures_run() {
	local spec k m rest iv rounds n label name args
	pinning
	rm -f "$RESULTS"/hold.*.json "$RESULTS"/rounds-*.json "$RESULTS"/figures.{md,json}
	{
		echo "service: $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$here/.." diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
		echo "cores: $(nproc) ($(nproc --all) on the machine); $PINNING"
		echo "started $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	} | tee "$RESULTS/build.txt"
	# one_run LABEL NAME BENCH-ARGS...: a fresh server NAME, the client
	# against it, the server stopped.
	one_run() {
		local label=$1 name=$2 target t0=$SECONDS
		shift 2
		serve_fresh "$name" "$label"
		if [ "$name" = orderstream ]; then target=(-service "$BASE" -service-pid "$PID"); else target=(-raw "$BASE" -raw-name "$name" -raw-pid "$PID"); fi
		echo
		echo "=== $label.$name: baseline bench $*"
		box "$label.$name"
		if command -v taskset >/dev/null; then
			echo "  $name (pid $PID) on cores $(taskset -pc "$PID" | sed 's/.*: //'), the load generator on cores ${CLIENT_CPUS:-$(taskset -pc $$ | sed 's/.*: //')}" |
				tee -a "$RESULTS/box.txt"
		fi
		"${CLIENT_PIN[@]}" "$BASELINE" bench "${target[@]}" -json "$RESULTS/$label.$name.json" "$@" 2>&1 |
			tee "$RESULTS/$label.$name.txt" || failed+=("$label.$name (exit ${PIPESTATUS[0]})")
		ran+=("$label.$name")
		stop_server "$PID"
		echo "  $label.$name took $((SECONDS - t0)) s, the server's start and stop included" | tee -a "$RESULTS/box.txt"
	}
	if [ "$HOLD_N" -gt 0 ]; then
		for name in $SERVERS; do one_run hold "$name" -hold "$HOLD_FOR" -n "$HOLD_N" -k 100 -steps "$HOLD_STEPS"; done
	fi
	for spec in $ROUNDS_RUNS $EXTRA_RUNS; do
		if [[ ! $spec =~ ^([0-9]+)x([0-9]+)@([0-9a-z.]+)\*([0-9]+)$ ]]; then
			echo "loadtest: $spec is not KxM@INTERVAL*ROUNDS (1x1000@0s*20)" >&2
			exit 2
		fi
		k=${BASH_REMATCH[1]} m=${BASH_REMATCH[2]} iv=${BASH_REMATCH[3]} rounds=${BASH_REMATCH[4]}
		n=$((k * m))
		cap n
		label=rounds-${k}x$((n / k))-$iv
		for name in $SERVERS; do one_run "$label" "$name" -n "$n" -k "$k" -interval "$iv" -rounds "$rounds"; done
	done
	echo
	"$BASELINE" table -in "$RESULTS" ${FIGURES_NOTE:+-note "$FIGURES_NOTE"} || failed+=("table")
	ran+=("table")
}

: >"$RESULTS/memory.txt"
: >"$RESULTS/box.txt"
case $profile in
smoke)
	# Small and fixed, so that `make test` stays quick and means the same everywhere.
	# It checks the harness and correctness (every stream held, every event,
	# no errors, gaps or duplicates); its time limits are loose on purpose, as
	# CI machines are shared and noisy: timing figures come from the other
	# profiles.
	HEARTBEAT_INTERVAL=1s
	K6_QUIET=1
	serve_local
	N=300
	connections_with_memory smoke-connections -e N=$N -e PER_VU=100 -e RAMP=3s -e HOLD=3s -e STREAMS_PER_ORDER=30 \
		-e CONNECT_P99_MS=15000
	k6run smoke-latency latency -e S=300 -e K=30 -e PER_VU=100 -e RAMP=2s -e INTERVAL=100ms -e SPREAD=300ms -e P99_MS=5000
	k6run smoke-resume resume -e S=200 -e K=20 -e PER_VU=100 -e RAMP=2s -e INTERVAL=300ms -e SPREAD=300ms \
		-e DROP_MIN=100ms -e DROP_MAX=500ms
	# The thresholds must be able to fail: the raw server, told to drop or
	# repeat a status, must fail latency.js on sse_gaps and sse_duplicates.
	for fault in gap duplicate; do
		start "raw-$fault" "$BASELINE" serve -fault "$fault" -heartbeat 1s
		metric=sse_gaps
		[ $fault = duplicate ] && metric=sse_duplicates
		BASE=$BASE must_fail "smoke-fault-$fault" "$metric" latency -e S=40 -e K=4 -e PER_VU=20 -e RAMP=1s -e INTERVAL=0s -e SPREAD=0s
	done
	# The figures harness at a few hundred streams, against the service and
	# one raw form: the hold, rounds at full speed and at a rate, the table.
	HEARTBEAT_INTERVAL=1s SERVERS="orderstream raw-writev" HOLD_N=200 HOLD_FOR=1s HOLD_STEPS=2 \
		ROUNDS_RUNS="1x300@0s*3 3x100@0s*2 1x300@100ms*2" EXTRA_RUNS="" \
		FIGURES_NOTE="smoke sizes: checks the harness, not figures to quote" figures_run
	;;
laptop)
	HEARTBEAT_INTERVAL=${HEARTBEAT_INTERVAL:-5s}
	if [ -n "$TARGET" ]; then
		# A deployment bills per stream and caps concurrency: each stream holds
		# one instance of the stream function, whose reserved concurrency
		# (the stack's StreamReservedConcurrency, RESERVED here, default 100)
		# is the most it runs at once; on the function URL publishes take
		# instances of it too. So streams use 80% of it, publishers the rest.
		: "${RESERVED:=100}"
		: "${N:=$((RESERVED * 8 / 10))}" "${S:=$((RESERVED * 8 / 10))}" "${K:=$((RESERVED / 10))}" "${HOLD:=40s}" "${RS:=$((RESERVED / 2))}"
	fi
	: "${N:=10000}" "${S:=10000}" "${K:=100}" "${RAMP:=20s}" "${HOLD:=20s}" "${INTERVAL:=1s}" "${RS:=2000}"
	cap N
	cap S
	cap RS
	serve_local
	want connections && connections_with_memory connections -e N="$N" -e RAMP="$RAMP" -e HOLD="$HOLD"
	want latency && k6run latency latency -e S="$S" -e K="$K" -e RAMP="$RAMP" -e INTERVAL="$INTERVAL"
	want latency-burst && k6run latency-burst latency -e S="$S" -e K="$K" -e RAMP="$RAMP" -e INTERVAL=0s -e SPREAD=0s \
		-e P99_MS="${BURST_P99_MS:-2000}"
	want resume && k6run resume resume -e S="$RS" -e K="$((RS / 10))" -e RAMP=10s -e INTERVAL="$INTERVAL"
	;;
baseline)
	[ -z "$TARGET" ] || { echo "loadtest: the baseline runs on this machine only" >&2; exit 2; }
	: "${N:=10000}" "${K:=100}" "${ROUNDS:=3}" "${HOLD:=15s}"
	HEARTBEAT_INTERVAL=${HEARTBEAT_INTERVAL:-5s}
	cap N
	serve_local
	start raw "$BASELINE" serve -heartbeat "$HEARTBEAT_INTERVAL" -shape "$RAW_SHAPE"
	RAW=$BASE RAW_PID=$PID
	SVC=$(<"$RESULTS/orderstream.addr")
	SVC=http://$SVC

	echo
	echo "=== idle streams: $N held for $HOLD by each server in turn (RSS sampled)"
	for which in raw orderstream; do
		box "hold-$which"
		if [ $which = raw ]; then pid=$RAW_PID flag=(-raw "$RAW"); else pid=$SERVER_PID flag=(-service "$SVC"); fi
		idle=$(rss_kb "$pid")
		sample "$pid" "$RESULTS/hold-$which.rss"
		"$BASELINE" bench -hold "$HOLD" -n "$N" -k "$K" "${flag[@]}" |
			tee "$RESULTS/hold-$which.txt" || failed+=("hold-$which")
		ran+=("hold-$which")
		stop_samplers
		peak=$(max_of "$RESULTS/hold-$which.rss")
		awk -v idle="$idle" -v peak="$peak" -v n="$N" -v w="$which" 'BEGIN {
			printf "%s: RSS %.1f MiB idle, %.1f MiB with %d streams: %.1f KiB per stream\n",
				w, idle/1024, peak/1024, n, (peak-idle)/n }' | tee -a "$RESULTS/memory.txt"
	done

	echo
	echo "=== fan-out at full speed: $N streams over $K orders, every status at once, $ROUNDS rounds each"
	box bench
	"$BASELINE" bench -raw "$RAW" -raw-pid "$RAW_PID" -service "$SVC" -service-pid "$SERVER_PID" -n "$N" -k "$K" -rounds "$ROUNDS" -json "$RESULTS/bench.json" |
		tee "$RESULTS/bench.txt" || failed+=("bench")
	ran+=("bench")

	# The same fan-out with k6 as the client, against each server.
	BASE=$RAW k6run k6-raw latency -e S="$N" -e K="$K" -e RAMP=10s -e INTERVAL=0s -e SPREAD=0s -e P99_MS=5000
	BASE=$SVC k6run k6-orderstream latency -e S="$N" -e K="$K" -e RAMP=10s -e INTERVAL=0s -e SPREAD=0s -e P99_MS=5000
	;;
figures)
	# The load figures of docs/performance.md and issue 19's table, in one
	# run on this box: orderstream and the three raw forms, one after another
	# with the same sizes, measured by the same lean client (baseline bench)
	# in the contract's rounds; then the table and the charts.
	[ -z "$TARGET" ] || { echo "loadtest: the figures run on this machine only" >&2; exit 2; }
	HEARTBEAT_INTERVAL=${HEARTBEAT_INTERVAL:-5s}
	: "${SERVERS:=orderstream raw-goroutine raw-writev raw-loop}"
	: "${HOLD_N:=19500}" "${HOLD_FOR:=10s}" "${HOLD_STEPS:=6}"
	# The table's rows: one order x 1,000 at full speed, 200 rounds (also the
	# churn row: the servers' RSS after them), one order x 10,000 and
	# 100 orders x 100 at full speed, 1,000 subscribers at 10 publishes/s,
	# 10,000 at 1/s.
	: "${ROUNDS_RUNS=1x1000@0s*200 1x10000@0s*10 100x100@0s*10 1x1000@100ms*20 1x10000@1s*5}"
	# docs/performance.md's other rows: latency at a status a second against
	# subscribers, and one 10,000-subscriber order's deliveries against rate.
	: "${EXTRA_RUNS=1x1000@1s*3 1x2000@1s*3 1x5000@1s*3 1x10000@500ms*3 1x10000@250ms*3 1x10000@100ms*3 1x10000@50ms*3}"
	cap HOLD_N
	figures_run
	"$here/bin/charts" -in "$RESULTS" || failed+=("charts")
	;;
scale)
	# Past one process, as users would: INSTANCES local servers sharing one
	# redis-server (started here, in a temporary folder), each on its own
	# loopback address, each taking the streams of its own k6 process; one
	# combined summary (scale-summary.json).
	[ -z "$TARGET" ] || { echo "loadtest: the scale run is local only" >&2; exit 2; }
	: "${INSTANCES:=6}" "${N:=100000}" "${RAMP:=300s}" "${HOLD:=30s}"
	HEARTBEAT_INTERVAL=${HEARTBEAT_INTERVAL:-15s}
	per=$(((N + INSTANCES - 1) / INSTANCES))
	cap per
	start_redis
	bases=() spids=()
	for i in $(seq 0 $((INSTANCES - 1))); do
		start "orderstream-$i" env ADDR="127.0.0.$((11 + i)):0" REDIS_URL="$REDIS_URL" \
			HEARTBEAT_INTERVAL="$HEARTBEAT_INTERVAL" "$SERVER"
		bases+=("$BASE") spids+=("$PID")
	done
	idle=0
	for p in "${spids[@]}"; do idle=$((idle + $(rss_kb "$p"))); done

	echo
	echo "=== scale: $N streams over $INSTANCES instances ($per each), one k6 process each, ramp $RAMP, hold $HOLD"
	box scale
	# What each process used, every 15 s: the cores are what runs out.
	top -b -d 15 -w 200 | grep --line-buffered -E '^top|^%Cpu|orderstr|k6|redis' >"$RESULTS/scale-top.txt" &
	samplers+=("$!")
	k6pids=()
	for i in $(seq 0 $((INSTANCES - 1))); do
		n=$((per * (i + 1) > N ? N - per * i : per))
		# The load generators hold 3 goroutines per stream (ours and the
		# transport's reader and writer): collect their garbage less often.
		GOGC=${K6_GOGC:-400} K6_NO_USAGE_REPORT=true K6_WEB_DASHBOARD=true K6_WEB_DASHBOARD_HOST=127.0.0.1 K6_WEB_DASHBOARD_PORT=0 \
			K6_WEB_DASHBOARD_PERIOD=${DASHBOARD_PERIOD:-2s} K6_WEB_DASHBOARD_EXPORT="$RESULTS/scale-k6-$i.html" \
			"$K6" run --address= --quiet --no-color --summary-export "$RESULTS/scale-k6-$i.json" \
			-e BASE="${bases[$i]}" -e N="$n" -e RAMP="$RAMP" -e HOLD="$HOLD" \
			scripts/connections.js >"$RESULTS/scale-k6-$i.txt" 2>&1 &
		k6pids+=("$!")
		pids+=("$!")
	done
	# While k6 runs, count what the servers hold every 5 s and keep the
	# moment they held most (the hold): established streams, open files (one
	# per stream, plus a few of their own) and RSS. Sampling, rather than
	# sleeping until a time computed from RAMP and HOLD, leaves durations to
	# the programs that parse them.
	established=0 fds=0 rss=0 k6rss=0
	while k6_running "${k6pids[@]}"; do
		now=$(ss -Htn state established | awk '$3 ~ /^127\.0\.0\.(1[1-9]|[2-9][0-9]):/' | wc -l)
		if [ "$now" -gt "$established" ]; then
			established=$now fds=0 rss=0 k6rss=0
			for p in "${spids[@]}"; do
				fds=$((fds + $(ls "/proc/$p/fd" | wc -l)))
				rss=$((rss + $(rss_kb "$p")))
			done
			for p in "${k6pids[@]}"; do k6rss=$((k6rss + $(rss_kb "$p"))); done
			# The servers' sockets by TCP state: CLOSE-WAIT ones are streams their
			# clients gave up on that the servers have not noticed yet.
			ss -Htan | awk '$4 ~ /^127\.0\.0\.(1[1-9]|[2-9][0-9]):/ { n[$1]++ } END { for (s in n) printf "%s %d\n", s, n[s] }' |
				sort >"$RESULTS/scale-sockets.txt"
		fi
		sleep 5
	done
	echo "at the hold (most streams held): servers hold $established established streams, $fds open files, RSS $((rss / 1024)) MiB ($((idle / 1024)) MiB idle); k6 RSS $((k6rss / 1024)) MiB" |
		tee "$RESULTS/scale-hold.txt"
	stop_samplers
	for i in "${!k6pids[@]}"; do
		rc=0
		wait "${k6pids[$i]}" || rc=$?
		ran+=("scale-k6-$i")
		[ "$rc" -eq 0 ] || failed+=("scale-k6-$i (exit $rc)")
	done
	jq -s --argjson n "$N" --argjson instances "$INSTANCES" --argjson established "$established" \
		--argjson fds "$fds" --argjson rss "$rss" --argjson idle "$idle" --argjson k6rss "$k6rss" '{
		target: $n, instances: $instances, k6Processes: length,
		held: (map(.metrics.sse_connections_peak.value) | add),
		serverEstablishedAtHold: $established, serverOpenFilesAtHold: $fds,
		serverRssKiB: $rss, serverIdleRssKiB: $idle, k6RssKiB: $k6rss,
		serverKiBPerStream: (($rss - $idle) / $established),
		errors: (map(.metrics.sse_errors.count) | add),
		reconnects: (map(.metrics.sse_reconnects.count) | add),
		heartbeats: (map(.metrics.sse_heartbeats.count) | add),
		checksFailed: (map(.metrics.checks.fails) | add),
		connectingP99msWorst: (map(.metrics.sse_connecting["p(99)"]) | max),
		thresholdsCrossed: ([.[].metrics[].thresholds // {} | to_entries[] | select(.value)] | length)
	}' "$RESULTS"/scale-k6-*.json | tee "$RESULTS/scale-summary.json"
	;;
rolling)
	# make loadtest-rolling: S streams through nginx (deploy/nginx's files)
	# over three instances sharing a redis-server, through a rolling SIGTERM
	# restart and a SIGKILL; once as a server without a drain would do it
	# (SHUTDOWN_DRAIN=0s: every stream ends at once; retry: exactly 3s), once
	# with SHUTDOWN_DRAIN and RETRY_JITTER. Sizes in whole seconds, so that
	# this script does arithmetic on no durations it would have to parse.
	[ -z "$TARGET" ] || { echo "loadtest: the rolling run is local only" >&2; exit 2; }
	: "${S:=15000}" "${K:=1500}" "${RAMP_S:=60}" "${STEP_S:=15}" "${SPACING_S:=16}"
	: "${DRAIN:=10s}" "${JITTER:=2s}" "${MODES:=nodrain drain}"
	cap S
	start_redis
	p=18081 upstreams=()
	for i in 0 1 2; do
		p=$(free_port "$p")
		upstreams+=("127.0.0.1:$p")
		p=$((p + 1))
	done
	ipids=()
	nginx_start "${upstreams[@]}"
	NGINX=$BASE
	for mode in $MODES; do
		case $mode in
		nodrain) rolling_run nodrain SHUTDOWN_DRAIN=0s ;;
		drain) rolling_run drain SHUTDOWN_DRAIN="$DRAIN" RETRY_JITTER="$JITTER" ;;
		*) echo "loadtest: MODES takes nodrain and drain" >&2; exit 2 ;;
		esac
	done
	jq -s . "$RESULTS"/rolling-*-summary.json >"$RESULTS/rolling-summary.json"
	"$here/bin/charts" -in "$RESULTS" || failed+=("charts")
	;;
*)
	echo "usage: run.sh smoke|laptop|baseline|figures|scale|rolling" >&2
	exit 2
	;;
esac
report
