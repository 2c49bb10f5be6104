#!/usr/bin/env bash
# Builds the engine (engine/src, net10.0 Release), only when its sources
# changed: a hash of the .cs/.csproj files is kept in a stamp per target, so a
# second call returns at once. Targets:
#   engine/out/                  Linux (this host's architecture), framework-
#                                dependent (run by dotnet), its dependencies
#                                precompiled (ReadyToRun)
#   engine/out/win-x64/          self-contained Windows engines, from the
#   engine/out/win-x86/          runtime packs: a Windows dump needs a Windows
#                                engine of its bitness (natively, or under Wine)
# Usage: engine/build.sh [--force] [--linux-only]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
force=0
windows=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --linux-only) windows=0 ;;
    *) echo "usage: engine/build.sh [--force] [--linux-only]" >&2; exit 2 ;;
  esac
done

if ! command -v dotnet >/dev/null; then
  echo "[engine] the .NET SDK (dotnet) is missing: install .NET 10 to build the engine" >&2
  exit 1
fi

hash=$(cd "$here/src" && find . \( -name '*.cs' -o -name '*.csproj' \) -not -path './obj/*' -not -path './bin/*' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

fresh() { # fresh DIR FILE: DIR's stamp matches the sources and FILE is there
  [ "$force" = 0 ] && [ -f "$1/.source-hash" ] && [ "$(cat "$1/.source-hash")" = "$hash" ] && [ -f "$1/$2" ]
}

published=0
if ! fresh "$out" DumpScope.Engine.dll; then
  # This host's architecture: ReadyToRun code is of one.
  case "$(uname -m)" in
    aarch64 | arm64) rid=linux-arm64 ;;
    *) rid=linux-x64 ;;
  esac
  echo "[engine] publishing DumpScope.Engine ($rid, ReadyToRun) into $out" >&2
  rm -f "$out/.source-hash"
  # ReadyToRun: ClrMD and the other libraries start precompiled instead of
  # being compiled by the JIT at every engine start (which is on a first
  # open's path); the csproj keeps the engine's own code out of it.
  dotnet publish "$here/src/DumpScope.Engine.csproj" -c Release -r "$rid" --self-contained false \
    -p:PublishReadyToRun=true -o "$out" --nologo -v quiet -clp:ErrorsOnly >&2
  echo "$hash" > "$out/.source-hash"
  published=1
fi

if [ "$windows" = 1 ]; then
  for rid in win-x64 win-x86; do
    target="$out/$rid"
    fresh "$target" DumpScope.Engine.exe && continue
    echo "[engine] publishing DumpScope.Engine ($rid, self-contained) into $target" >&2
    rm -rf "$target"
    dotnet publish "$here/src/DumpScope.Engine.csproj" -c Release -r "$rid" --self-contained \
      -o "$target" -p:DebugType=none --nologo -v quiet -clp:ErrorsOnly >&2
    echo "$hash" > "$target/.source-hash"
    published=1
  done
fi
if [ "$published" = 1 ]; then
  # Publishing for a runtime identifier restores for it: restore the
  # RID-less build again so `dotnet build`/`dotnet test` need not.
  dotnet restore "$here/src/DumpScope.Engine.csproj" --nologo -v quiet >/dev/null
fi
