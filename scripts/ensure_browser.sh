#!/usr/bin/env bash
# Installs headless Chromium for the report's browser test when it is missing (Debian/Ubuntu, as root).
# The test drives Chromium over its DevTools pipe (--remote-debugging-pipe), so no chromedriver and no
# Python package are needed: the `chromium` binary alone is enough.
set -u
have() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }
if have; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "ensure_browser: chromium missing and not root; install it with: sudo apt-get install -y chromium" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_browser: chromium missing and no apt-get; install Chromium with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "ensure_browser: installing Debian's chromium (about 1-2 minutes, once)"
# Try without `apt-get update` first (fast when the package lists are fresh), then refresh and retry.
(apt-get install -y -q chromium >/dev/null 2>&1) \
  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)
if have; then
  chromium --version 2>/dev/null | head -1
  exit 0
fi
echo "ensure_browser: could not install chromium; the browser test will skip" >&2
exit 1
