"""Test-only fault injection: the delay point holds only the named point and key; unknown points are refused."""

import time

import pytest

from arcade_pacs.core import faults
from arcade_pacs.settings import FaultSettings


@pytest.fixture(autouse=True)
def _disarmed():
    yield
    faults.configure(FaultSettings())


def test_a_delayed_point_pauses_for_its_key_only():
    faults.configure(FaultSettings(delay_at="analysis", delay_key="1.2.3", delay_s=0.3))
    started = time.monotonic()
    faults.point("analysis", "1.2.3")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    faults.point("analysis", "9.9.9")  # another instance
    faults.point("sent", "1.2.3")  # another point
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize("setting", ["kill_at", "delay_at"])
def test_an_unknown_point_is_refused_at_start(setting):
    with pytest.raises(ValueError, match=f"faults.{setting}: unknown point"):
        faults.configure(FaultSettings(**{setting: "nowhere"}))
