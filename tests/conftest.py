"""Fixtures of the engine tests (helpers are in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Runner


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)
