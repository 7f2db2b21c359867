import pydicom.sr._concepts_dict as tables
import pytest

from arcade_pacs.report import codes


@pytest.mark.parametrize("name", sorted(codes.ALL))
def test_every_code_is_in_the_dicom_or_snomed_tables(name):
    code = codes.ALL[name]
    scheme = tables.concepts[code.scheme_designator]
    meanings = {meaning for entries in scheme.values() for value, (meaning, _) in entries.items() if value == code.value}
    assert meanings, f"{name}: {code.value} is not a {code.scheme_designator} code"
    assert code.meaning in meanings


def test_every_module_level_code_is_listed_in_all():
    from pydicom.sr.coding import Code

    listed = {id(c) for c in codes.ALL.values()}
    for name, value in vars(codes).items():
        if isinstance(value, Code):
            assert id(value) in listed or value in codes.ALL.values(), name


def test_presence():
    assert codes.presence(True) == codes.PRESENT
    assert codes.presence(False) == codes.ABSENT
