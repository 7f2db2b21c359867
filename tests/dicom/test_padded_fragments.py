"""A cine with odd-length JPEG fragments, sent by DCMTK's storescu (which pads them in transit,
leaving the Basic Offset Table stale), is stored and analysed like the original."""

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_fragments, parse_basic_offsets
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import iter_pixels
from sqlalchemy import select

from arcade_pacs.db.tables import Instance, Job
from arcade_pacs.jobs.worker import Worker
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.pipeline.frames import decode_frames
from tests.dicom.test_scp import storescu
from tests.factory import odd_fragment_cine

pytestmark = [pytest.mark.network]


def _table_and_lengths(path):
    buffer = DicomBytesIO(pydicom.dcmread(path).PixelData)
    buffer.is_little_endian = True
    return parse_basic_offsets(buffer), [len(f) for f in generate_fragments(buffer)]


def test_odd_fragment_cine_sent_by_storescu_is_analysed(scp, rubo, tmp_path, tiny_classifier):
    odd = odd_fragment_cine(rubo, tmp_path / "odd.dcm")
    offsets, lengths = _table_and_lengths(odd)
    assert all(n % 2 for n in lengths)

    out = storescu(scp.port, odd, extra=["-xy"])
    assert out.returncode == 0, out.stdout + out.stderr
    with scp.sessions() as s:
        stored = s.scalars(select(Instance)).one().path

    # What arrived: every fragment padded to even length, the table unchanged, so pydicom's own
    # frame reading fails on it (the failure this test guards against).
    stored_offsets, stored_lengths = _table_and_lengths(stored)
    assert stored_lengths == [n + 1 for n in lengths]
    assert stored_offsets == offsets
    with pytest.raises(ValueError, match=r"Unexpected tag '\(FE00,00FF\)'"):
        next(iter_pixels(stored, indices=[1]))

    worker = Worker(scp.settings, scp.sessions, ModelHolder(tiny_classifier))
    assert worker.run_once()
    with scp.sessions() as s:
        job = s.scalars(select(Job)).one()
        assert job.state == "done", job.last_error
        result = job.instance.result
        assert len(result.frames) == 96
        assert len(result.keyframes) == 8
    np.testing.assert_array_equal(decode_frames(stored).data, decode_frames(rubo).data)
