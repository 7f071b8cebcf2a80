#!/usr/bin/env bash
# Browser tests drive Debian's chromium through playwright-core: install it when missing.
# (Playwright's own browser download is never used: this machine only reaches Debian's mirror.)
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing: run 'sudo apt-get update && sudo apt-get install -y chromium'" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
command -v chromium
