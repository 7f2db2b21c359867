"""The presentation contexts the plugin declares, as SCP (receive) and as SCU (send).

They are loaded from ``arcade_pacs/dicom/presentation_contexts.toml``, package data shipped with the
code, so an installed package and the container find it; that file is the SCP's contract with
the hospital network, described for people in ``scp/CONFORMANCE.md`` (a test keeps the two in
sync).
A declared transfer syntax is negotiated only when an installed pixel-data decoder can decode
it, so a context is never accepted and the data then refused (PS3.8 9.3.2.2 lets an SCP reject
any transfer syntax it does not support).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

CONTEXTS_FILE = Path(__file__).with_name("presentation_contexts.toml")


@dataclass(frozen=True)
class Contexts:
    """SOP classes and transfer syntaxes (UID to name) the SCP and SCU use."""

    verification: str
    storage: dict[str, str]
    transfer_syntaxes: dict[str, str]
    send: dict[str, list[str]]
    undecodable: list[str]


def decodable(transfer_syntax_uid: str) -> bool:
    """True when pydicom has an available decoder for pixel data in this transfer syntax."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(transfer_syntax_uid).is_available)
    except NotImplementedError:
        return False


def load_contexts(path: Path = CONTEXTS_FILE) -> Contexts:
    """Read the declared contexts and drop transfer syntaxes no installed decoder handles."""
    data = tomllib.loads(Path(path).read_text())
    declared = {t["uid"]: t["name"] for t in data["transfer_syntax"]}
    usable = {uid: name for uid, name in declared.items() if decodable(uid)}
    return Contexts(
        verification=data["verification"]["uid"],
        storage={s["uid"]: s["name"] for s in data["storage"]},
        transfer_syntaxes=usable,
        send={s["uid"]: list(s["transfer_syntaxes"]) for s in data["send"]},
        undecodable=sorted(set(declared) - set(usable)),
    )
