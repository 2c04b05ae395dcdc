#!/usr/bin/env bash
# Re-vendor the console's browser libraries from the npm registry (run only to bump a version;
# never part of a build). Usage: src/console/vendor.sh [PREACT_VERSION] [HTM_VERSION] [UPLOT_VERSION]
# Copies the listed dist files into src/console/ui/vendor/ unchanged and prints the new
# sha256 / integrity lines for src/console/vendor.toml.
set -euo pipefail
cd "$(dirname "$0")"
PREACT="${1:-11.2.0}" HTM="${2:-3.1.1}" UPLOT="${3:-1.6.32}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "preact@$PREACT" "htm@$HTM" "uplot@$UPLOT" >/dev/null)
for t in "$work"/*.tgz; do mkdir -p "${t%.tgz}" && tar xzf "$t" -C "${t%.tgz}"; done
copy() { cp "$work/$1/$2" "ui/vendor/$3"; echo "$3 $(sha256sum "ui/vendor/$3" | cut -d' ' -f1) $(npm view "$4" dist.integrity)"; }
copy "preact-$PREACT" package/dist/preact.mjs preact.mjs "preact@$PREACT"
copy "preact-$PREACT" package/hooks/dist/hooks.mjs preact-hooks.mjs "preact@$PREACT"
copy "htm-$HTM" package/dist/htm.mjs htm.mjs "htm@$HTM"
copy "uplot-$UPLOT" package/dist/uPlot.iife.min.js uplot.iife.min.js "uplot@$UPLOT"
copy "uplot-$UPLOT" package/dist/uPlot.min.css uplot.min.css "uplot@$UPLOT"
echo "update src/console/vendor.toml with the versions and digests above"
