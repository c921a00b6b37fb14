#!/usr/bin/env bash
# Build the installable WordPress plugin zip: dist/simulcast-player-<version>.zip, with the
# plugin folder at its root (what Plugins -> Add New -> Upload Plugin expects).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
plugin="$root/integrations/wordpress/simulcast-player"
version=$(sed -n 's/^ \* Version: *//p' "$plugin/simulcast-player.php")
out="${1:-$root/dist}"
mkdir -p "$out"
zip="$out/simulcast-player-$version.zip"
rm -f "$zip"
(cd "$plugin/.." && python3 - "$zip" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for base, dirs, files in os.walk("simulcast-player"):
        dirs.sort()
        for name in sorted(files):
            z.write(os.path.join(base, name))
PY
)
echo "$zip"
