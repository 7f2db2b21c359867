"""Put an instance into storage and the database as the C-STORE handler does (no network)."""

import hashlib
from pathlib import Path

import pydicom

from arcade_pacs.receive.receipt import record_instance
from arcade_pacs.store.files import atomic_write, instance_path


def ingest(path_or_ds, settings, sessions) -> int:
    """Store a file or data set; return the new Instance id."""
    if isinstance(path_or_ds, (str, Path)):
        data = Path(path_or_ds).read_bytes()
        ds = pydicom.dcmread(path_or_ds, stop_before_pixels=True)
    else:
        import io

        buffer = io.BytesIO()
        path_or_ds.save_as(buffer, enforce_file_format=True)
        data, ds = buffer.getvalue(), path_or_ds
    target = instance_path(settings.storage.root, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    atomic_write(target, data)
    with sessions() as s:
        inst = record_instance(ds, str(target), len(data), ds.file_meta.TransferSyntaxUID, "TEST", session=s,
                               digest=hashlib.sha256(data).hexdigest())
        s.commit()
        return inst.id
