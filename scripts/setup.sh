#!/usr/bin/env bash
# Installs whatever DumpScope is missing on this machine, and nothing else:
# Debian packages for the Python side, the local dotnet tools (dotnet-dump,
# the SOS oracle of the tests) and the engine build. Idempotent; a second run
# checks and returns in a few seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

say() { echo "[setup] $*" >&2; }

debian_packages=(
  python3-pyqt6 python3-pyqtgraph python3-qtpy python3-numpy
  python3-pytest python3-pytestqt python3-hypothesis
  black flake8 mypy
)
# The Linux engine is a Native AOT executable (engine/build.sh), linked with
# clang; the package brings what the link uses (binutils, libc6-dev,
# libgcc-12-dev). zlib comes with .NET's AOT runtime pack.
debian_packages+=(clang)
# Windows dumps' managed heap is read by the win-x64 engine under Wine. Only
# the 64-bit Wine: installing wine32:i386 upgrades dozens of amd64 libraries,
# and a 32-bit engine cannot run where the kernel runs no 32-bit code.
debian_packages+=(wine64)
# Opt-in: what looking at the GUI and the HTML report needs (screenshots
# under Xvfb, the report opened in headless Chromium).
if [ "${DUMPSCOPE_GUI_TOOLS:-}" = 1 ]; then
  debian_packages+=(xvfb xauth imagemagick chromium)
fi

missing=()
for pkg in "${debian_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    say "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"
    exit 1
  fi
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v dotnet >/dev/null; then
  say "the .NET 10 SDK is missing: install it (https://dot.net) for the managed analyses"
  exit 1
fi

# dotnet-dump is a local tool (.config/dotnet-tools.json); restore only when
# the pinned version is not in the NuGet cache yet.
if [ -f .config/dotnet-tools.json ]; then
  version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' .config/dotnet-tools.json | head -n 1)
  # Tools land in the user's NuGet folder even where NUGET_PACKAGES points elsewhere.
  if [ ! -d "${NUGET_PACKAGES:-$HOME/.nuget/packages}/dotnet-dump/$version" ] &&
    [ ! -d "$HOME/.nuget/packages/dotnet-dump/$version" ]; then
    say "restoring dotnet-dump $version"
    dotnet tool restore >/dev/null
  fi
fi

if [ -x engine/build.sh ]; then
  engine/build.sh >&2
fi
