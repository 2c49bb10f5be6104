# The repository root holds this file, so pytest puts the root on sys.path and
# tests import `analysis`, `app`, `views` and `scenarios` as the application
# does. The Qt binding is chosen here, before pytest-qt or qtpy load one.
import os
import shutil
import tempfile
from typing import Iterator

import pytest

from app.qt_binding import choose_binding

choose_binding()

_RUN_RESULTS = tempfile.mkdtemp(prefix="dumpscope-test-results-")


def pytest_configure(config: pytest.Config) -> None:
    # The results cache (analysis/results_cache.py) of a test run is never the
    # user's: results computed under a test's monkeypatches must not be shown
    # later, and the user's entries must not answer a test.
    os.environ["DUMPSCOPE_RESULTS"] = _RUN_RESULTS


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_RUN_RESULTS, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _module_results_cache(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """A module's fixtures start with an empty results cache of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUMPSCOPE_RESULTS", str(tmp_path_factory.mktemp("results")))
        yield


@pytest.fixture(autouse=True)
def _test_results_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test starts with an empty results cache of its own: only a
    second open within the test can be answered from it."""
    monkeypatch.setenv("DUMPSCOPE_RESULTS", str(tmp_path_factory.mktemp("results")))
