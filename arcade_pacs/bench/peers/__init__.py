"""Real peers over loopback, one typed home for the bench and the tests: DCMTK's storescp (the
PACS) and storescu/echoscu (the modality), Orthanc, ``arcade-pacs serve`` itself as its own
process, and PostgreSQL databases.

Why here: ``arcade-pacs bench`` starts these peers at run time, so they must ship in the package;
the tests start the very same peers (``tests/conftest.py`` builds its fixtures on them), so a
peer is started, configured and stopped one way. Nothing in serving imports this package (the
bench sits at the top of the layers), and the peers need nothing of the product but its command
line: they run it as a process, never in-process.

- :mod:`.processes`: finding a program, free ports, waiting for a listener or a condition, stopping;
- :mod:`.dcmtk`: :class:`StoreSCP`, :func:`storescu`, :func:`echoscu`, and the bench's timed :func:`store`;
- :mod:`.orthanc`: :class:`Orthanc` (DIMSE, REST, DICOMweb);
- :mod:`.plugin`: the one TOML writer, :func:`loopback_config`, :class:`Plugin`, the bench's :func:`start_plugin`;
- :mod:`.postgres`: :func:`postgres_database`;
- :mod:`.studies`: the cines the bench's modality sends.
"""

from arcade_pacs.bench.peers.dcmtk import StoreSCP, acknowledged, echoscu, store, storescu
from arcade_pacs.bench.peers.orthanc import Orthanc, dicomweb_plugin
from arcade_pacs.bench.peers.plugin import (
    Plugin,
    dimse_destination,
    loopback_config,
    start_plugin,
    toml_value,
    upgrade_database,
    write_config,
)
from arcade_pacs.bench.peers.postgres import POSTGRES_SERVER, postgres_database
from arcade_pacs.bench.peers.processes import (
    LOOPBACK,
    PeerMissing,
    free_port,
    process_tree,
    run,
    stop,
    tool,
    wait_for_port,
    wait_until,
)
from arcade_pacs.bench.peers.studies import RUBO, rubo_frames, study_files, write_cine

__all__ = [
    "LOOPBACK", "POSTGRES_SERVER", "RUBO", "Orthanc", "PeerMissing", "Plugin", "StoreSCP", "acknowledged",
    "dicomweb_plugin", "dimse_destination", "echoscu", "free_port", "loopback_config", "postgres_database",
    "process_tree", "rubo_frames", "run", "start_plugin", "stop", "store", "storescu", "study_files", "tool",
    "toml_value", "upgrade_database", "wait_for_port", "wait_until", "write_cine", "write_config",
]
