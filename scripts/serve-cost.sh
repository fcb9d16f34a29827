#!/usr/bin/env bash
# The live view's cost to the frame loop: `pancap stream --serve` over the same recording with 0 viewers, 1 viewer
# and 100 viewers of /stream.mjpeg (each reading every part as it comes; or, with STALL=1, asking and then reading
# nothing), side by side in one run, each configuration ROUNDS times interleaved. Prints fps and latency p50/p95
# from each run's --summary-json. The viewers run on the same machine (a Python process multiplexing the sockets),
# so on a small box their own CPU shows in the figures too.
#   scripts/serve-cost.sh [PANCAP] [RECORDING] [ROUNDS]
set -euo pipefail
PANCAP="${1:-target/release/pancap}"
REC="${2:-target/bench/street-loop60.mjpeg}"
ROUNDS="${3:-2}"
MODELS="${PANCAP_MODELS_DIR:-models}"
STALL="${STALL:-0}"
tmp="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

viewers() { # PORT N: N clients of /stream.mjpeg until killed
    exec python3 - "$1" "$2" "$STALL" <<'PY'
import selectors, socket, sys, time
port, n, stall = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setblocking(False)
    if not stall:
        sel.register(s, selectors.EVENT_READ)
    else:
        globals().setdefault("held", []).append(s)
got = 0
while True:
    if stall:
        time.sleep(1)
        continue
    for key, _ in sel.select(timeout=1):
        try:
            data = key.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        if not data:
            sel.unregister(key.fileobj)
        got += len(data)
PY
}

printf "%-8s %-6s %8s %9s %9s %s\n" viewers round fps p50_ms p95_ms "overlays drawn"
for round in $(seq 1 "$ROUNDS"); do
    for n in 0 1 100; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        "$PANCAP" --models-dir "$MODELS" stream --replay "$REC" --serve "127.0.0.1:$port" --serve-max-clients 128 \
            --serve-linger 1 --summary-json -o /dev/null 2> "$tmp/log" &
        pid=$!
        until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null; do sleep 0.05; done
        vpid=""
        if [ "$n" -gt 0 ]; then viewers "$port" "$n" & vpid=$!; fi
        # the overlay count, read just before the stream ends (the linger second)
        overlays=""
        while kill -0 "$pid" 2>/dev/null; do
            m=$(curl -s --max-time 1 "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '
                /^pancap_overlays_total / {n=$2} /^pancap_overlay_seconds_sum / {s=$2}
                END {if (n != "") printf "%d (%.1f ms each)", n, (n > 0 ? s / n * 1000 : 0)}') || true
            [ -n "$m" ] && overlays="$m"
            sleep 0.5
        done
        wait "$pid" || { cat "$tmp/log"; exit 1; }
        [ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null || true
        python3 - "$tmp/log" "$n" "$round" "$overlays" <<'PY'
import json, sys
line = [l for l in open(sys.argv[1]) if l.startswith("{")][-1]
s = json.loads(line)
print(f"{sys.argv[2]:<8} {sys.argv[3]:<6} {s['fps']:8.2f} {s['p50_ms']:9.1f} {s['p95_ms']:9.1f} {sys.argv[4]}")
PY
    done
done
