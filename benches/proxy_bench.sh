#!/usr/bin/env bash
# Proxy load bench: `portcullis run` (optimised build, its own process) versus going direct, in one
# run, against a loopback TLS origin. Prints a table of direct vs proxied figures and their ratio,
# proxy CPU per request, RSS per idle intercepted connection and the proxy's peak RSS.
#
#   benches/proxy_bench.sh                 # 5 s per phase, 1000 idle connections
#   PHASE_SECS=10 IDLE_CONNS=2000 benches/proxy_bench.sh
#   BENCH_PHASES=upload benches/proxy_bench.sh   # only some phases: upload,multipart,upload-h2,get,plain,connect,idle
#   UPLOAD_CONNS=16 BENCH_PHASES=upload benches/proxy_bench.sh   # uploads on 16 connections at once (default 4)
#   ROUNDS=5 benches/proxy_bench.sh        # direct and proxied alternate in 5 rounds per phase (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
# Idle-connection phase holds IDLE_CONNS x 3 sockets across the two processes.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec cargo bench --bench proxy_load
