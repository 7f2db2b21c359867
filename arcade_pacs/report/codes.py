"""Every coded concept the SR and the result images use, in one place.

Each code is taken from pydicom's copy of the DICOM (PS3.16) and SNOMED CT concept tables,
and ``tests/unit/report/test_codes.py`` checks every entry here against them (value, scheme
and meaning), so a typo cannot reach a PACS.

Unit of the probability: UCUM ``1`` ("no units", CID 7181). A probability is a dimensionless
ratio in [0, 1]; ``1`` is the unit DICOM's own tables list for dimensionless quantities,
whereas the annotation form ``{probability}`` is valid UCUM but in no DICOM context group, and
some viewers render annotations verbatim.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes

# TID 1500 root and procedure (the imaging procedure, not the algorithm).
DOCUMENT_TITLE = codes.DCM.ImagingMeasurementReport  # (126000, DCM)
PROCEDURE_CORONARY_ANGIOGRAPHY = codes.SCT.CoronaryAngiography  # (33367005, SCT)

# The observer of the report is the algorithm, as a device (TID 1002 Observer Type, CID 270).
DEVICE_OBSERVER = codes.DCM.Device  # (121007, DCM)

# The finding of each measurement group (TID 1501 Finding / Qualitative Evaluation).
STENOSIS = codes.SCT.Stenosis  # (415582006, SCT)
PRESENT = codes.SCT.Present  # (52101004, SCT)
ABSENT = codes.SCT.Absent  # (272519000, SCT)
FINDING_SITE_CORONARY_ARTERY = codes.SCT.CoronaryArtery  # (41801008, SCT)

# The probability of the finding (TID 300 Measurement) and its unit.
PROBABILITY = codes.DCM.Probability  # (122157, DCM)
UNIT_NO_UNITS = codes.UCUM.NoUnits  # ("1", UCUM)

# Regions outline the window the model marked (TID 1410 region: an image region SCOORD).
IMAGE_REGION = codes.DCM.ImageRegion  # (111030, DCM)
# The spatial coordinates a Probability is INFERRED FROM (TID 300 -> TID 320 $Purpose).
SOURCE_OF_MEASUREMENT = codes.DCM.SourceOfMeasurement  # (121112, DCM)

# A run that could not be analysed: its stenosis evaluation is "Not Evaluated" and the reason
# is a Comment; a study none of whose analysed runs is positive while some could not be
# analysed is "Indeterminate", never "Absent".
NOT_EVALUATED = codes.SCT.NotEvaluated  # (373121007, SCT)
INDETERMINATE = codes.SCT.Indeterminate  # (82334004, SCT)
COMMENT = codes.DCM.Comment  # (121106, DCM)

# Contributing Equipment Sequence purpose (CID 7005).
PROCESSING_EQUIPMENT = codes.DCM.ProcessingEquipment  # (109102, DCM)

# Why a result image names its run in Source Image Sequence (CID 7202): its tiles are a montage of
# the run's frames.
SOURCE_IMAGE_FOR_MONTAGE = codes.DCM.SourceImageForMontage  # (121329, DCM)

ALL = {
    "DOCUMENT_TITLE": DOCUMENT_TITLE,
    "PROCEDURE_CORONARY_ANGIOGRAPHY": PROCEDURE_CORONARY_ANGIOGRAPHY,
    "DEVICE_OBSERVER": DEVICE_OBSERVER,
    "STENOSIS": STENOSIS,
    "PRESENT": PRESENT,
    "ABSENT": ABSENT,
    "FINDING_SITE_CORONARY_ARTERY": FINDING_SITE_CORONARY_ARTERY,
    "PROBABILITY": PROBABILITY,
    "UNIT_NO_UNITS": UNIT_NO_UNITS,
    "IMAGE_REGION": IMAGE_REGION,
    "SOURCE_OF_MEASUREMENT": SOURCE_OF_MEASUREMENT,
    "NOT_EVALUATED": NOT_EVALUATED,
    "INDETERMINATE": INDETERMINATE,
    "COMMENT": COMMENT,
    "PROCESSING_EQUIPMENT": PROCESSING_EQUIPMENT,
    "SOURCE_IMAGE_FOR_MONTAGE": SOURCE_IMAGE_FOR_MONTAGE,
}
"""Every code above by name (what the code-table test iterates)."""


def presence(present: bool):
    """The coded value of a finding's presence."""
    return PRESENT if present else ABSENT
