"""The states of a retraining run's row, and the refusal of a second run: what the admin needs to
start and show retraining without importing training (:mod:`arcade_pacs.training.retrain` runs it)."""

from __future__ import annotations

from enum import StrEnum


class RetrainBusy(RuntimeError):
    """A retraining is already queued or running (in this process or, by its row, in another)."""


class RetrainState(StrEnum):
    """Every state of a retraining run."""

    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"


ACTIVE_STATES = (RetrainState.QUEUED.value, RetrainState.RUNNING.value)
