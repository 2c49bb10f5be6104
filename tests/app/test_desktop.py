"""Double-click integration: the desktop entry, the dump MIME types and the
icon, installed per user by scripts/install-desktop.sh."""

import configparser
import os
import subprocess
from pathlib import Path

from qtpy import QtGui

from app.application import ICON
from tests.paths import ROOT


def test_install_registers_the_entry_types_and_icon_and_uninstall_removes_them(
    tmp_path,
):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path))
    script = ROOT / "scripts" / "install-desktop.sh"
    subprocess.run([str(script)], env=env, check=True, capture_output=True)

    entry = configparser.ConfigParser(interpolation=None)
    entry.read(tmp_path / "applications" / "dumpscope.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"] == f"{ROOT / 'dumpscope'} %f"
    assert Path(desktop["Exec"].split()[0]).is_file()
    assert set(desktop["MimeType"].strip(";").split(";")) == {
        "application/x-windows-minidump",
        "application/x-core",
    }
    assert (
        tmp_path / "icons" / "hicolor" / "128x128" / "apps" / "dumpscope.png"
    ).is_file()
    package = (tmp_path / "mime" / "packages" / "dumpscope-mime.xml").read_text()
    assert 'value="MDMP" offset="0"' in package
    globs = tmp_path / "mime" / "globs2"
    if globs.exists():  # update-mime-database ran (shared-mime-info installed)
        assert "application/x-windows-minidump:*.dmp" in globs.read_text()

    subprocess.run(
        [str(script), "--uninstall"], env=env, check=True, capture_output=True
    )
    assert not (tmp_path / "applications" / "dumpscope.desktop").exists()


def test_window_icon_loads(qapp):
    assert not QtGui.QIcon(str(ICON)).pixmap(32, 32).isNull()
