#!/usr/bin/env bash
# Registers DumpScope with the desktop (freedesktop.org): a menu entry, the
# icon, and the dump types, so a double-click on a .dmp or a core dump opens
# it. Per user, under $XDG_DATA_HOME (default ~/.local/share); undo with
# --uninstall.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps="$data/applications"
mime="$data/mime"
icons="$data/icons/hicolor"

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$apps/dumpscope.desktop" "$mime/packages/dumpscope-mime.xml" \
    "$icons/scalable/apps/dumpscope.svg" "$icons/128x128/apps/dumpscope.png"
else
  mkdir -p "$apps" "$mime/packages" "$icons/scalable/apps" "$icons/128x128/apps"
  sed "s#@DUMPSCOPE@#$here/dumpscope#" "$here/resources/dumpscope.desktop.in" > "$apps/dumpscope.desktop"
  cp "$here/resources/dumpscope-mime.xml" "$mime/packages/"
  cp "$here/resources/dumpscope.svg" "$icons/scalable/apps/"
  cp "$here/resources/dumpscope.png" "$icons/128x128/apps/"
fi
# The databases are refreshed where the tools exist (desktop-file-utils,
# shared-mime-info); without them the files take effect at the next login.
if command -v update-mime-database >/dev/null; then update-mime-database "$mime" >/dev/null; fi
if command -v update-desktop-database >/dev/null; then update-desktop-database "$apps" >/dev/null; fi
echo "DumpScope ${1:+un}registered in $data" >&2
