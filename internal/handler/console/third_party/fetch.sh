#!/usr/bin/env bash
# The console's vendored JavaScript and CSS, pinned. They come from the npm
# registry as the packages' own tarballs (npm pack needs no Node project and
# runs no install scripts); nothing needs Node at build or run time.
#
#   bash fetch.sh          check the files here against SHA256SUMS (CI does)
#   bash fetch.sh update   fetch the pinned versions again, then check
#
# To move to a new version: change the pins below, run `bash fetch.sh update`
# and `sha256sum -- *.js *.css LICENSE.* > SHA256SUMS`, read the diff, commit.
set -euo pipefail
cd "$(dirname "$0")"

HTMX=2.0.11   # htmx.org: BSD Zero Clause License
UPLOT=1.6.32  # uplot: MIT

if [ "${1:-}" = update ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "htmx.org@$HTMX" "uplot@$UPLOT" >/dev/null)
  tar -xzf "$tmp/htmx.org-$HTMX.tgz" -C "$tmp" package/dist/htmx.min.js package/LICENSE
  cp "$tmp/package/dist/htmx.min.js" htmx.min.js
  cp "$tmp/package/LICENSE" LICENSE.htmx
  rm -rf "$tmp/package"
  tar -xzf "$tmp/uplot-$UPLOT.tgz" -C "$tmp" package/dist/uPlot.iife.min.js package/dist/uPlot.min.css package/LICENSE
  cp "$tmp/package/dist/uPlot.iife.min.js" uPlot.iife.min.js
  cp "$tmp/package/dist/uPlot.min.css" uPlot.min.css
  cp "$tmp/package/LICENSE" LICENSE.uplot
fi

sha256sum --check --strict --quiet SHA256SUMS
echo "vendored files match SHA256SUMS (htmx $HTMX, uPlot $UPLOT)"
