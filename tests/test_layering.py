"""The layers stay apart: analysis/ runs headless and never touches Qt."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_ANALYSIS = (
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "pyqtgraph",
    "app",
    "views",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_analysis_module_imports_qt_or_the_gui():
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            imported_modules(path) & set(FORBIDDEN_IN_ANALYSIS)
        )
        for path in (ROOT / "analysis").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_analysis_module_loads_no_qt():
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "analysis").rglob("*.py")
        if path.name != "__init__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FORBIDDEN_IN_ANALYSIS!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_views_compute_nothing_they_never_call_the_engine_or_parse_dumps():
    for path in (ROOT / "views").rglob("*.py"):
        imported = imported_modules(path)
        tree = ast.parse(path.read_text())
        from_modules = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not any(
            m.startswith(
                ("analysis.dumpfile", "analysis.managed.client", "analysis.native")
            )
            for m in from_modules
        ), f"{path.name} reaches past the analysis results: {sorted(from_modules)}"
        assert "subprocess" not in imported and "mmap" not in imported, path.name
