#!/usr/bin/env bash
# Fetch the dashboard's front-end libraries from the npm registry (npm pack: the exact
# published tarball, no install scripts run) and copy the built files plus licences into
# api/static/vendor/. The result is committed, so nothing is fetched at run time and the
# dashboard never calls a CDN. Re-run to upgrade; pin versions here.
set -euo pipefail

LEAFLET_VERSION="1.9.4"

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/api/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "leaflet@${LEAFLET_VERSION}" >/dev/null
tar -xzf "leaflet-${LEAFLET_VERSION}.tgz"

rm -rf "$dest/leaflet"
mkdir -p "$dest/leaflet/images"
cp package/dist/leaflet.js package/dist/leaflet.css "$dest/leaflet/"
cp package/dist/images/*.png "$dest/leaflet/images/"
cp package/LICENSE "$dest/leaflet/LICENSE"
printf 'leaflet %s from the npm registry (npm pack leaflet@%s)\n' \
    "$LEAFLET_VERSION" "$LEAFLET_VERSION" > "$dest/leaflet/VERSION"
echo "vendored leaflet ${LEAFLET_VERSION} into $dest/leaflet"
