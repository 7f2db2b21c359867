"""A running ``arcade-pacs serve`` under hostile input: 240 malformed data sets by C-STORE and
29 attacks on the association layer. Each gets a defined DICOM status (or a defined end of the
association), every stored instance ends ``done`` or ``failed`` with a reason, the SCP answers
C-ECHO throughout, the process stays under 1.5 GB, and no patient value reaches its log.

Figures for README's "Reliability" section:
``.venv/bin/python -m pytest -q -s tests/load/test_hostile.py`` prints the outcome table.
"""

import collections
import json
import sqlite3
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from pynetdicom import AE, _config

from arcade_pacs.bench.peers import free_port, loopback_config, wait_until, write_config
from tests.hostile import CANARIES, dataset_cases, encode, native_base, network_cases, run_network_case

pytestmark = [pytest.mark.network, pytest.mark.slow]

RSS_LIMIT_MB = 1536


def echo(port: int) -> bool:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCADE")
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return status is not None and status.Status == 0
    finally:
        assoc.release()


def store_file(port: int, path: Path, sop_class: str, syntax: str) -> str:
    """C-STORE the file as it is on disk; the outcome as ``0xNNNN``, or what happened instead."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(sop_class, syntax)
    ae.dimse_timeout = 120
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCADE")
    if not assoc.is_established:
        return "association refused"
    try:
        response = assoc.send_c_store(path)
        if response is None or "Status" not in response:
            return "no response"
        return f"0x{int(response.Status):04X}"
    except Exception as exc:  # the SCU could not even send it (pynetdicom's side)
        return f"not sent ({type(exc).__name__})"
    finally:
        if assoc.is_established:
            assoc.release()


class Echoer(threading.Thread):
    """C-ECHO every half second for the whole run; counts failures and the slowest answer."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.stop_event = port, threading.Event()
        self.sent = self.failed = 0
        self.slowest = 0.0

    def run(self):
        while not self.stop_event.is_set():
            started = time.monotonic()
            ok = echo(self.port)
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.sent += 1
            self.failed += not ok
            self.stop_event.wait(0.5)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_hostile_inputs_against_a_running_plugin(tmp_path, rubo, tiny_model, start_plugin):
    scp_port, admin_port = free_port(), free_port()
    config = write_config(tmp_path / "arcade.toml", loopback_config(
        tmp_path, scp_port, admin_port, tiny_model, [], ["MODALITY"],
        scp={"network_timeout_s": 5, "max_associations": 20},
        # No SR while the inputs arrive: this test is about receipt and analysis.
        pipeline={"study_quiet_seconds": 3600, "max_attempts": 2}))
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port)
    echoer = Echoer(scp_port)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = dataset_cases(rubo)
            attacks = network_cases(encode(native_base(rubo)))
        assert len(cases) + len(attacks) >= 200
        echoer.start()
        files = tmp_path / "cases"
        files.mkdir()
        received = {}
        for case in cases:
            path = case.write(files)
            received[case.sop_instance] = (case, store_file(scp_port, path, case.sop_class, case.transfer_syntax))
            path.unlink()
        connection = {}
        for attack in attacks:
            connection[attack.name] = (attack, run_network_case(attack, scp_port))
            assert echo(scp_port), f"no C-ECHO after {attack.name}"

        def settled():
            status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status"))
            return status["jobs"]["queued"] == 0 and status["jobs"]["running"] == 0

        wait_until(settled, timeout=900, interval=2, message="every job done or failed")
        echoer.stop_event.set()
        echoer.join()
        rss = peak_rss_mb(plugin.pid)
        assert plugin.poll() is None, "the plugin died"
    finally:
        echoer.stop_event.set()
        plugin.close()
    text = log.read_text()

    with sqlite3.connect(tmp_path / "arcade.db") as db:
        jobs = {uid: (state, error) for uid, state, error in db.execute(
            "SELECT i.sop_instance_uid, j.state, j.last_error FROM instances i JOIN jobs j ON j.instance_id = i.id")}

    table = collections.Counter()
    undefined = []
    for uid, (case, status) in received.items():
        if not status.startswith("0x"):
            undefined.append((case.name, status))
            continue
        if status != "0x0000":
            table[(case.category, f"refused {status}")] += 1
            continue
        state, error = jobs.get(uid, ("missing", None))
        if state == "done":
            table[(case.category, "stored, analysed")] += 1
        elif state == "failed" and error:
            table[(case.category, "stored, job failed with a reason")] += 1
        else:
            undefined.append((case.name, f"stored, job {state}"))
    for name, (attack, outcome) in connection.items():
        if outcome in ("closed", "rejected", "aborted", "closed by us", "association not accepted"):
            table[(attack.category, f"association {outcome}")] += 1
        else:
            undefined.append((name, outcome))

    print(f"\n{len(cases)} data sets + {len(attacks)} association attacks against arcade-pacs serve")
    for (category, outcome), n in sorted(table.items()):
        print(f"{n:4d}  {category:34s} {outcome}")
    print(f"C-ECHO during the run: {echoer.sent} sent, {echoer.failed} failed, slowest {echoer.slowest:.2f} s")
    print(f"plugin peak RSS (VmHWM): {rss:.0f} MB")
    failures = [line for line in text.splitlines() if "Traceback" in line]
    print(f"tracebacks in the plugin log: {len(failures)}")

    assert not undefined, undefined
    assert not failures, "a traceback reached the log (it would print raw exception messages)"
    assert table[("control", "stored, analysed")] == 2
    assert echoer.failed == 0
    assert echoer.sent > 10
    assert rss < RSS_LIMIT_MB
    leaked = [c for c in CANARIES if c in text]
    assert not leaked, f"patient values in the plugin log: {leaked}"
