#!/usr/bin/env bash
# The browser the UI test drives: Debian's chromium at /usr/bin/chromium (Playwright is pointed at it;
# `playwright install` is never run: it downloads a browser build of its own). Idempotent: does
# nothing when chromium is already there; otherwise installs it with apt-get (needs root).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [[ -x $CHROMIUM ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "$CHROMIUM is missing: install Debian's chromium package (sudo apt-get install -y chromium);" \
    "until then the browser test is skipped (and fails under CI)" >&2
  [[ -z ${CI:-} ]] && exit 0
  exit 1
fi
echo "installing chromium (Debian package) for the browser test"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
"$CHROMIUM" --version
