#!/usr/bin/env bash
# Builds the engine (engine/src, net10.0 Release) into engine/out/, only when
# its sources changed: a hash of the .cs/.csproj files is kept in a stamp, so
# a second call returns at once. Usage: engine/build.sh [--force]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
stamp="$out/.source-hash"

if ! command -v dotnet >/dev/null; then
  echo "[engine] the .NET SDK (dotnet) is missing: install .NET 10 to build the engine" >&2
  exit 1
fi

hash=$(cd "$here/src" && find . \( -name '*.cs' -o -name '*.csproj' \) -not -path './obj/*' -not -path './bin/*' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

if [ "${1:-}" != "--force" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && [ -f "$out/DumpScope.Engine.dll" ]; then
  exit 0
fi

echo "[engine] building DumpScope.Engine into $out" >&2
rm -f "$stamp"
dotnet build "$here/src/DumpScope.Engine.csproj" -c Release -o "$out" --nologo -v quiet -clp:ErrorsOnly >&2
echo "$hash" > "$stamp"
