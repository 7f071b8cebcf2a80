#!/usr/bin/env bash
# The serving benchmark drives load with C load generators: h2load (gRPC over HTTP/2, from
# Debian's nghttp2-client) and wrk (REST). Install them from Debian's mirror when missing.
# Called by bench/serving.py (not by `make test`).
set -euo pipefail
missing=()
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "missing load generators: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
command -v h2load
command -v wrk
