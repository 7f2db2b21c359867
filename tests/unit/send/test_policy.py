"""The outbox's retry policy as pure functions: which statuses retry, how long to wait."""

import random

from arcade_pacs.send.outbox import Verdict, backoff_s, verdict
from arcade_pacs.settings import OutboxSettings


def test_verdicts_follow_the_storage_statuses():
    assert verdict(0x0000, True) is Verdict.SENT
    assert verdict(None, False) is Verdict.RETRY  # transport
    assert verdict(0xA700, False) is Verdict.RETRY
    assert verdict(0xA7FF, False) is Verdict.RETRY
    assert verdict(0x0213, False) is Verdict.RETRY
    for status in (0xA900, 0xA9FF, 0xC000, 0xC210, 0x0122, 0x0124):
        assert verdict(status, False) is Verdict.FAIL


def test_backoff_doubles_from_10_s_with_jitter_and_is_capped_at_60_s():
    cfg = OutboxSettings()
    rng = random.Random(1)
    for attempts, nominal in ((1, 10), (2, 20), (3, 40), (4, 60), (10, 60), (50, 60)):
        for _ in range(50):
            delay = backoff_s(attempts, cfg, rng)
            assert nominal * (1 - cfg.jitter) <= delay <= nominal
    draws = {round(backoff_s(3, cfg, rng), 3) for _ in range(20)}
    assert len(draws) > 10  # jittered, not one value
