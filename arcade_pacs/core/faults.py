"""Test-only fault injection: a process kills itself with SIGKILL at a named point, or pauses there.

The crash tests start a real ``arcade-pacs serve`` and need it to die at an exact place, the
way a power cut or the kernel's OOM killer would: no ``finally``, no flush, no goodbye. Each
place calls :func:`point` with its name; nothing happens unless ``[faults] kill_at`` names it
(configured once at start-up by :func:`configure`, from the one Settings class). ``delay_at``
instead holds the process there for ``delay_s`` seconds, so that a test can kill it from outside
(``docker kill``) while it is surely at that point, however fast the work. Never set ``[faults]``
in production.

Points (in the order data flows):

``stored``
    the C-STORE handler wrote the instance file, before its database commit (mid-receive: the
    modality never gets an answer, so it must send again).
``analysis``
    a worker claimed a job and analysed it, before recording the result (mid-analysis).
``sr_written``
    the reporter wrote the SR file, before committing the report and its delivery.
``sr_committed``
    the SR and its delivery are committed, before the result images and presentation states
    are drawn (the report is ``derived_pending``: the next claim of the study makes them).
``sent``
    the destination acknowledged the SR (success status), before the delivery is committed
    as sent: the SR is sent again after the lease, and it must be the same SOP instance.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

POINTS = ("stored", "analysis", "sr_written", "sr_committed", "sent")

_kill_at = ""
_kill_key = ""
_kill_once: Path | None = None
_delay_at = ""
_delay_key = ""
_delay_s = 0.0


def configure(faults) -> None:
    """Arm the point named by ``faults.kill_at`` (a :class:`arcade_pacs.settings.FaultSettings`)."""
    global _kill_at, _kill_key, _kill_once, _delay_at, _delay_key, _delay_s
    for setting, value in (("kill_at", faults.kill_at), ("delay_at", faults.delay_at)):
        if value and value not in POINTS:
            raise ValueError(f"faults.{setting}: unknown point {value!r}; known: {', '.join(POINTS)}")
    _kill_at, _kill_key, _kill_once = faults.kill_at, faults.kill_key, faults.kill_once
    _delay_at, _delay_key, _delay_s = faults.delay_at, faults.delay_key, faults.delay_s
    if _kill_at:
        log.warning("FAULT INJECTION armed: this process kills itself at %r (test-only setting)", _kill_at)
    if _delay_at:
        log.warning("FAULT INJECTION armed: this process pauses %g s at %r (test-only setting)", _delay_s, _delay_at)


def point(name: str, key: str | None = None) -> None:
    """Pause at ``name`` if it is the delayed point; SIGKILL this process if ``name`` is the armed
    point (and ``key`` matches, and not yet done)."""
    if name == _delay_at and (not _delay_key or key == _delay_key):
        log.warning("FAULT INJECTION: pausing %g s at %r", _delay_s, name)
        time.sleep(_delay_s)
    if name != _kill_at or (_kill_key and key != _kill_key):
        return
    if _kill_once is not None:
        if _kill_once.exists():
            return
        _kill_once.parent.mkdir(parents=True, exist_ok=True)
        _kill_once.write_text(name)
    log.warning("FAULT INJECTION: SIGKILL at %r", name)
    os.kill(os.getpid(), signal.SIGKILL)
