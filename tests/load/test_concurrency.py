"""50 concurrent associations, each DCMTK storescu storing a real cine (the Rubo JPEG run under
its own UIDs) into a running ``arcade-pacs serve``: zero failures, all 50 analysed.

``.venv/bin/python -m pytest -q -s tests/load/test_concurrency.py`` prints the figures.
"""

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from arcade_pacs.bench.peers import free_port, loopback_config, tool, wait_until, write_config
from tests.load.test_hostile import peak_rss_mb

pytestmark = [pytest.mark.network, pytest.mark.slow]

N = 50


def test_50_concurrent_associations_each_storing_a_real_cine(tmp_path, rubo, tiny_model, start_plugin):
    source = pydicom.dcmread(rubo)
    files = []
    studies = [generate_uid() for _ in range(5)]
    for n in range(N):
        ds = source.copy()
        ds.StudyInstanceUID = studies[n % len(studies)]
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = tmp_path / f"cine{n:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)

    scp_port, admin_port = free_port(), free_port()
    config = write_config(tmp_path / "arcade.toml", loopback_config(
        tmp_path, scp_port, admin_port, tiny_model, [], scp={"max_associations": N + 5},
        pipeline={"study_quiet_seconds": 3600}))
    plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
    try:
        started = time.monotonic()
        senders = [
            subprocess.Popen([tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(scp_port),
                              str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for path in files
        ]
        outputs = [p.communicate(timeout=600)[0] for p in senders]
        receipt_s = time.monotonic() - started
        failed = [(f.name, out) for f, p, out in zip(files, senders, outputs, strict=True) if p.returncode != 0]
        assert not failed, failed[:3]

        def status():
            return json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status"))

        wait_until(lambda: status()["jobs"]["done"] + status()["jobs"]["failed"] == N, timeout=1800, interval=2,
                   message="50 jobs finished")
        analysed_s = time.monotonic() - started
        final = status()
        rss = peak_rss_mb(plugin.pid)
    finally:
        plugin.close()
    print(f"\n{N} concurrent storescu associations: {N - len(failed)} stored in {receipt_s:.1f} s, "
          f"{final['jobs']['done']} analysed, {final['jobs']['failed']} failed, all done after {analysed_s:.0f} s; "
          f"plugin peak RSS {rss:.0f} MB")
    assert final["instances_received"] == N
    assert final["jobs"]["done"] == N
    assert final["jobs"]["failed"] == 0
    stored = sorted(Path(tmp_path / "store").rglob("*.dcm"))
    assert len(stored) == N
    assert {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in stored} == {
        pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert rss < 1536
