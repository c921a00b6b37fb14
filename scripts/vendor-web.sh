#!/usr/bin/env bash
# Fetch the browser libraries the dashboard, the player and the browser tests use, once, from
# the npm registry (npm pack: the published tarball, checked against the registry's integrity
# hash), and copy the built files with their licenses into the repo. The results are committed;
# nothing runs npm at install or test time. Rerun after changing a version below, then commit.
set -euo pipefail

HLS_JS=1.7.4      # same version tests/e2e/hls/web pins for the third-party player tests
UPLOT=1.6.32
AXE_CORE=4.14.1   # tests only: accessibility checks in the browser tests
QRCODE=2.0.4      # qrcode-generator: the player's tip invoice as a QR code

root=$(cd "$(dirname "$0")/.." && pwd)
web="$root/src/simulcast/web/static/vendor"
tests="$root/tests/web/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$web" "$tests"

unpack() {  # unpack NAME VERSION -> $work/NAME/package
  local name=$1 version=$2
  mkdir -p "$work/$name"
  (cd "$work/$name" && npm pack --silent "$name@$version" >/dev/null && tar xzf ./*.tgz)
}

unpack hls.js "$HLS_JS"
cp "$work/hls.js/package/dist/hls.min.js" "$web/hls.min.js"
cp "$work/hls.js/package/LICENSE" "$web/hls.js.LICENSE"

unpack uplot "$UPLOT"
cp "$work/uplot/package/dist/uPlot.iife.min.js" "$web/uPlot.iife.min.js"
cp "$work/uplot/package/dist/uPlot.min.css" "$web/uPlot.min.css"
cp "$work/uplot/package/LICENSE" "$web/uPlot.LICENSE"

unpack qrcode-generator "$QRCODE"
cp "$work/qrcode-generator/package/dist/qrcode.js" "$web/qrcode.js"
# The package ships no LICENSE file: its source header states the MIT license and the copyright.
{
  sed -n '1,16p' "$work/qrcode-generator/package/dist/qrcode.js"
  cat <<'MIT'

The MIT License (MIT)

Copyright (c) 2009 Kazuhiko Arase

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
MIT
} > "$web/qrcode-generator.LICENSE"

unpack axe-core "$AXE_CORE"
cp "$work/axe-core/package/axe.min.js" "$tests/axe.min.js"
cp "$work/axe-core/package/LICENSE" "$tests/axe-core.LICENSE"

cat > "$web/VERSIONS.md" <<MD
# Vendored browser libraries

Fetched from the npm registry by \`scripts/vendor-web.sh\`; do not edit by hand.

| library | version | license | files |
|---|---|---|---|
| hls.js | $HLS_JS | Apache-2.0 (\`hls.js.LICENSE\`) | \`hls.min.js\` |
| uPlot | $UPLOT | MIT (\`uPlot.LICENSE\`) | \`uPlot.iife.min.js\`, \`uPlot.min.css\` |
| qrcode-generator | $QRCODE | MIT (\`qrcode-generator.LICENSE\`) | \`qrcode.js\` |
| axe-core (tests only, in \`tests/web/vendor/\`) | $AXE_CORE | MPL-2.0 (\`axe-core.LICENSE\`) | \`axe.min.js\` |
MD
echo "vendored hls.js $HLS_JS, uPlot $UPLOT, qrcode-generator $QRCODE, axe-core $AXE_CORE"
