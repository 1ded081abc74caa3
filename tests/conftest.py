"""Test-wide settings: slow tests run only with EMPG_RUN_SLOW=1; no hub access, ever."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("EMPG_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set EMPG_RUN_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
