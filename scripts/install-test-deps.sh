#!/usr/bin/env bash
# What the test suite needs beyond npm: Debian's chromium (the dashboard and report tests
# drive it through playwright-core) and prometheus (promtool and a real server for the
# /metrics tests). Installed only when missing, so that it is quick when run again.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
