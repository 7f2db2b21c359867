"""The one place the plugin uses pynetdicom beyond its public API, checked at start.

Everything else the SCP needs is public in pynetdicom 3.0: the configuration options of
``pynetdicom._config`` (``STORE_RECV_CHUNKED_DATASET``, documented as the way to configure it),
the notification and intervention events, ``AE.make_server`` with a ``server_class`` and the
documented server and request-handler classes of ``pynetdicom.transport``, ``event.dataset_path``.

One thing has no public hook: *where* a chunked data set is written. pynetdicom opens
``tempfile.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")`` in the system's
temporary folder, on another file system than the store, with no bound on its size. The receipt
must write under the storage root (so a commit is a rename) and drop bytes past
``scp.max_instance_bytes`` as they arrive (so a peer cannot fill a disk). So the name
``NamedTemporaryFile`` in ``pynetdicom.dimse_messages`` is replaced by the receipt's opener.

:func:`check` verifies, before the SCP listens, that the installed pynetdicom is a version this
was written against and still opens received data sets through that name with those
arguments; anything else stops the SCP with :class:`UnsupportedPynetdicom` rather than receive
data sets into the wrong place unbounded. ``tests/unit/receive/test_pynetdicom_adapter.py``
fails on a new pynetdicom for the same reasons, and ``pyproject.toml`` pins ``pynetdicom<4``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version

TESTED_VERSIONS = ("3.0.",)
"""pynetdicom releases whose chunked receipt was read and tested (version prefixes)."""
CALL = 'NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")'
"""How pynetdicom opens a chunked data set's file, as the receipt's opener expects to be called."""


class UnsupportedPynetdicom(RuntimeError):
    """The installed pynetdicom is not one the chunked receipt's hook was checked against."""


def check() -> None:
    """Raise :class:`UnsupportedPynetdicom` unless the hook below fits the installed pynetdicom."""
    from pynetdicom import dimse_messages

    installed = version("pynetdicom")
    if not installed.startswith(TESTED_VERSIONS):
        raise UnsupportedPynetdicom(
            f"pynetdicom {installed} is not a tested release ({', '.join(TESTED_VERSIONS)}x): the chunked receipt "
            f"replaces a private name of pynetdicom.dimse_messages; check {__name__} against it first"
        )
    if not hasattr(dimse_messages, "NamedTemporaryFile") or CALL not in inspect.getsource(dimse_messages):
        raise UnsupportedPynetdicom(
            f"pynetdicom {installed} no longer opens received data sets with {CALL} in dimse_messages"
        )


def receive_data_sets_with(opener: Callable[..., object]) -> None:
    """Make pynetdicom open each chunked C-STORE data set with ``opener`` (process-wide), which
    is called as :data:`CALL` and returns an object with ``name``, ``write``, ``file.flush`` and
    ``close``, as ``NamedTemporaryFile`` does."""
    from pynetdicom import dimse_messages

    check()
    dimse_messages.NamedTemporaryFile = opener  # type: ignore[attr-defined]
