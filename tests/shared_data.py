"""Where the tests find the team's real data: ``$JAXMEM_DATA`` when set (the folder jaxmem's own
loaders search first; ``.ci/run`` sets it to ``../shared/data``), else ``../shared/data`` beside
the repository root.

A user's fresh clone has no ``../shared``: a test that needs it skips with the reason there, and
fails when ``CI=true`` (CI must have the copy)."""

import os
from pathlib import Path

import pytest

#: The shared data folder (may not exist).
SHARED_DATA = Path(os.environ.get("JAXMEM_DATA") or
                   Path(__file__).resolve().parent.parent.parent / "shared" / "data")


def shared_data(relpath: str = "") -> Path:
    """``SHARED_DATA / relpath``; skip the test when it is absent (fail when CI=true)."""
    path = SHARED_DATA / relpath
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing and CI=true: the shared data copy must be present in CI")
        pytest.skip(f"{path} is missing (the shared data copy ../shared/data is not beside this clone)")
    return path
