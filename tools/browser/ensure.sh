#!/usr/bin/env bash
# Installs what the dashboard's browser test needs, once: Debian's chromium (when
# /usr/bin/chromium is missing) and playwright-core from npm into tools/browser/node_modules.
# Prints what it did; fails loudly when something cannot be installed.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x /usr/bin/chromium ]; then
    echo "ensure: installing Debian's chromium with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q chromium >&2
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "ensure: /usr/bin/chromium is still missing after apt-get install chromium" >&2
    exit 1
fi

if [ ! -f node_modules/playwright-core/package.json ]; then
    echo "ensure: installing playwright-core with npm" >&2
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund >&2; else npm install --no-audit --no-fund >&2; fi
fi
node -e "require.resolve('playwright-core')" >/dev/null
echo "ensure: chromium $(/usr/bin/chromium --version 2>/dev/null | head -1), playwright-core $(node -p "require('playwright-core/package.json').version")"
