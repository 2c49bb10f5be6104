#!/usr/bin/env bash
# Builds the engine (engine/src, net10.0 Release), only when its sources
# changed: a hash of the .cs/.csproj files is kept in a stamp per target, so a
# second call returns at once. Targets:
#   engine/out/DumpScope.Engine  Linux (this host's architecture), one Native
#                                AOT executable: no dotnet runtime needed to
#                                run it, no JIT on a first open's path. Its
#                                link needs a C toolchain: clang (Debian: the
#                                clang package; scripts/setup.sh installs it)
#   engine/out/win-x64/          self-contained Windows engines, from the
#   engine/out/win-x86/          runtime packs: a Windows dump needs a Windows
#                                engine of its bitness (natively, or under
#                                Wine). JIT builds: Native AOT cannot compile
#                                for Windows on Linux
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

fresh() { # fresh DIR FILE STAMP: DIR's stamp is STAMP and FILE is there
  [ "$force" = 0 ] && [ -f "$1/.source-hash" ] && [ "$(cat "$1/.source-hash")" = "$3" ] && [ -f "$1/$2" ]
}

published=0
# The kind of build is part of the Linux stamp: a JIT build of the same
# sources (an older checkout's) is not the executable asked for.
linux_stamp="$hash native-aot"
if ! fresh "$out" DumpScope.Engine "$linux_stamp"; then
  case "$(uname -m)" in
    aarch64 | arm64) rid=linux-arm64 ;;
    *) rid=linux-x64 ;;
  esac
  # Native AOT links with the platform's C toolchain, clang by default.
  if ! command -v clang >/dev/null; then
    echo "[engine] the Linux engine is compiled ahead of time (Native AOT) and linked with clang, which is missing: install it (Debian: apt-get install clang; scripts/setup.sh does)" >&2
    exit 1
  fi
  echo "[engine] publishing DumpScope.Engine ($rid, Native AOT) into $out" >&2
  rm -f "$out/.source-hash"
  # What an earlier build left beside the executable (the JIT engine's
  # assemblies) goes; the Windows engines' folders stay.
  if [ -d "$out" ]; then
    find "$out" -mindepth 1 -maxdepth 1 \( -type f -o -name runtimes \) -exec rm -rf {} +
  fi
  # PublishAot comes from the csproj for a linux-* runtime identifier.
  dotnet publish "$here/src/DumpScope.Engine.csproj" -c Release -r "$rid" \
    -o "$out" --nologo -v quiet -clp:ErrorsOnly >&2
  echo "$linux_stamp" > "$out/.source-hash"
  published=1
fi

if [ "$windows" = 1 ]; then
  for rid in win-x64 win-x86; do
    target="$out/$rid"
    fresh "$target" DumpScope.Engine.exe "$hash" && continue
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
