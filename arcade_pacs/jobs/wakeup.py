"""How analysis threads learn at once that a job is queued (they also poll, so a lost wake-up
only delays a job by ``pipeline.poll_interval_s``).

Three ways, one per topology:

1. **Event** (:meth:`WakeUps.set`): each analysis thread waits on its own ``threading.Event``;
   every other way ends here.
2. **Child's standard input**: under ``serve --role all`` the SCP runs in the parent and the
   workers in a child process; the parent writes a line on the child's stdin
   (:meth:`arcade_pacs.jobs.supervisor.WorkerProcess.wake`), the child's
   :class:`~arcade_pacs.jobs.supervisor.ParentLink` reads it and calls :meth:`WakeUps.set`.
3. **PostgreSQL LISTEN** (:meth:`WakeUps.listen`): workers in other processes or on other hosts
   hear the ``NOTIFY`` that queuing a job sends (:mod:`arcade_pacs.db.notify`); SQLite has no
   such channel, and one host's worker process is woken by way 2.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import make_url

from arcade_pacs.db.notify import JOBS_CHANNEL, Listener
from arcade_pacs.jobs.worker import Worker


class WakeUps:
    """The wake-ups of one process's analysis threads."""

    def __init__(self, workers: Sequence[Worker]):
        self.workers = workers  # the service's own list: threads added later are woken too
        self._listener: Listener | None = None

    def set(self, _instance_id=None) -> None:
        """Wake every analysis thread of this process (an instance was stored, here or elsewhere)."""
        for worker in self.workers:
            worker.wake.set()

    def listen(self, database_url: str) -> None:
        """On PostgreSQL, wake the threads whenever any process queues a job (LISTEN/NOTIFY)."""
        if self.workers and make_url(database_url).get_backend_name() == "postgresql":
            self._listener = Listener(database_url, JOBS_CHANNEL, self.set).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
