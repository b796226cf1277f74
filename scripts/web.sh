#!/usr/bin/env bash
# Builds the annotation page (web/) into web/dist, which the gateway compiles into its binary
# (services/gateway/src/routes/page.rs): installs the page's packages from the committed
# package-lock.json with `npm ci` (cached under $AIAA_CACHE_DIR/npm; skipped while the lock
# file is unchanged), then bundles with esbuild. Prints the dist folder. Needs Node.js 18 or
# newer: installed from Debian's packages when missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/../web"
cache=${AIAA_CACHE_DIR:-$HOME/.cache/aiaa}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "web: installing Node.js (Debian's nodejs and npm packages)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >&2 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm >&2; }
  else
    echo "web: Node.js 18 or newer is needed to build the annotation page (install nodejs and npm)" >&2
    exit 1
  fi
fi
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 18 ] || { echo "web: Node.js $(node --version) is too old: the page needs 18 or newer" >&2; exit 1; }
stamp=node_modules/.aiaa-package-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "web: installing the page's packages (npm ci: niivue, esbuild, playwright-core; cached after the first time)" >&2
  npm ci --cache "$cache/npm" --prefer-offline --no-audit --no-fund >&2
  echo "$want" >"$stamp"
fi
node build.mjs >&2
echo "$PWD/dist"
