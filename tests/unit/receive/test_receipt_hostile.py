"""The hostile data sets of ``tests/hostile.py`` through the one receipt (no network): each is
stored or refused with a kind and its status from the one table, never another exception,
never a file left in the store for a refusal, and no patient value in a reason."""

import collections
import warnings

import pytest
from sqlalchemy import select

from arcade_pacs.db.tables import Instance
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.receive.receipt import DICOM_STATUS, Refusal, StoreContext, receive_part10
from tests.hostile import CANARIES, dataset_cases

pytestmark = [pytest.mark.slow]


def test_every_hostile_data_set_is_stored_or_refused_with_a_kind(settings, sessions, rubo, tmp_path):
    ctx = StoreContext(settings, sessions, load_contexts())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = dataset_cases(rubo)
    outcomes = collections.Counter()
    stored = set()
    for case in cases:
        path = case.write(tmp_path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kept = receive_part10(ctx, path, calling_aet="MODALITY", sop_class=case.sop_class,
                                      transfer_syntax=case.transfer_syntax)
            stored.add(kept.sop_instance_uid)
            outcomes["stored"] += 1
            assert not path.exists()  # moved into the store
        except Refusal as refusal:
            assert refusal.status == DICOM_STATUS[refusal.kind]
            assert not any(c in str(refusal) for c in CANARIES), (case.name, str(refusal))
            outcomes[f"0x{refusal.status:04X} {refusal.kind}"] += 1
            path.unlink()
    print(f"\n{len(cases)} hostile data sets through receive_part10")
    for outcome, n in outcomes.most_common():
        print(f"{n:4d}  {outcome}")
    with sessions() as s:
        held = {i.sop_instance_uid: i.path for i in s.scalars(select(Instance))}
    assert set(held) == stored
    files = {str(p) for p in settings.storage.root.rglob("*.dcm") if ".incoming" not in p.parts}
    assert files == set(held.values())  # nothing of a refusal stays, every kept instance has its file
    assert outcomes["stored"] >= 2
    assert len(outcomes) > 4
