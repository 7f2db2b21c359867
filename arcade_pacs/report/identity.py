"""Who made a result object: the plugin's equipment identity, the same on the SR, the result
images and the presentation states.

Every object the plugin writes names, in its General Equipment module (PS3.3 C.7.5.1), the
plugin as its maker (Manufacturer, Manufacturer's Model Name, Software Versions) and, in the
SOP Common module's Contributing Equipment Sequence (PS3.3 C.12.1), the model that produced
the result as Processing Equipment, with its Device UID, so a PACS user can tell which model
version said what. The TID 4019 Algorithm Identification of the SR's groups is built here too,
in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd

from arcade_pacs import __version__
from arcade_pacs.report import codes

MANUFACTURER = "ARCADE PACS"
MODEL_NAME = "ARCADE PACS stenosis plugin"
"""Manufacturer's Model Name (0008,1090) of every object the plugin writes."""
DISCLAIMER = (
    "Research use only: the ARCADE stenosis classifier has not been clinically validated; "
    "this result must not be used for diagnosis."
)
NOTICE = "RESEARCH USE ONLY - NOT FOR DIAGNOSIS"
"""The notice burnt into result images and written on presentation states."""
LO = 64
"""Largest value of a Long String (LO), PS3.5 6.2."""


@dataclass(frozen=True)
class ModelIdentity:
    """The model behind a result: its name, version and Device UID."""

    name: str
    version: str
    device_uid: str


def software_versions() -> list[str]:
    """Software Versions (0018,1020) of the plugin that writes the object."""
    return [f"arcade-pacs {__version__}"]


def equipment(model: ModelIdentity) -> dict:
    """General Equipment attributes (PS3.3 C.7.5.1), as keyword arguments of highdicom's SOP classes."""
    return {
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": MODEL_NAME,
        "software_versions": software_versions(),
    }


def with_device_uid(item: hd.ContributingEquipment, device_uid: str) -> hd.ContributingEquipment:
    """Add Device UID (0018,1002) to a Contributing Equipment item: highdicom has no parameter for it.

    PS3.3 C.12.1 (SOP Common Module, Table C.12-1) lists Device UID among the attributes of a
    Contributing Equipment Sequence item; it identifies the model as a device, as the SR's
    observer context does (TID 1004 Device Observer UID), so the two can be matched.
    """
    item.DeviceUID = device_uid
    return item


def contributing_equipment(model: ModelIdentity) -> list[hd.ContributingEquipment]:
    """The model as Processing Equipment (CID 7005), with its version, Device UID and the disclaimer."""
    item = hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.PROCESSING_EQUIPMENT,
        manufacturer_model_name=model.name[:LO],
        software_versions=[f"arcade-pacs {__version__}", model.version[:LO]],
        contribution_description=DISCLAIMER[:1024],
    )
    return [with_device_uid(item, model.device_uid)]


BODY_PART = "CORONARYARTERY"
"""Body Part Examined (CID 4031 defined term) of the plugin's subject, as the SR's finding site says."""


def beyond_highdicom_series(ds, source):
    """General Series anatomy (PS3.3 C.7.3.1) of a result image or presentation state, which
    highdicom's constructors take no parameter for; changes ``ds`` in place and returns it.

    Body Part Examined (Type 3) and Laterality (Type 2C: required for a paired body part) are
    copied from the source run when it records them; otherwise Body Part Examined is the
    plugin's subject, the coronary arteries (unpaired, so Laterality is then absent, as
    PS3.5 7.4.4 wants of a 2C attribute whose condition does not hold).
    """
    body_part = str(source.get("BodyPartExamined", "") or "").strip()
    ds.BodyPartExamined = body_part or BODY_PART
    laterality = str(source.get("Laterality", "") or "").strip()
    if body_part and laterality:
        ds.Laterality = laterality
    return ds


def algorithm_identification(model: ModelIdentity, parameters: list[str] | None = None) -> hd.sr.AlgorithmIdentification:
    """TID 4019 Algorithm Identification of ``model``, with its ``parameters`` (the one builder)."""
    return hd.sr.AlgorithmIdentification(
        name=model.name[:LO], version=model.version[:LO], parameters=parameters or None, manufacturer=MANUFACTURER,
    )
