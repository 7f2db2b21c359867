"""PHI-free error descriptions and log records (phi.describe, phi.PhiFilter)."""

import logging

from arcade_pacs.core.phi import PhiFilter, describe, scrub, where


def test_quoted_values_are_scrubbed_but_tags_and_attribute_names_kept():
    text = "A (0028,0100) 'Bits Allocated' value of 'Smith^John' is invalid; Unexpected tag '(FE00,00FF)'"
    assert scrub(text) == "A (0028,0100) 'Bits Allocated' value of '...' is invalid; Unexpected tag '(FE00,00FF)'"
    assert scrub('could not convert string to float: "19700101"') == "could not convert string to float: '...'"
    assert scrub("line one\n  line two\n") == "line one; line two"


def test_describe_names_the_type_and_where():
    try:
        float("Canary^Phi")
    except ValueError as exc:
        assert describe(exc) == "ValueError: could not convert string to float: '...'"
        assert where(exc).startswith("test_phi.py:")


def _record(name, msg, args=(), exc_info=None):
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info)


def test_the_log_filter_scrubs_other_libraries_and_tracebacks():
    f = PhiFilter()
    record = _record("pydicom", "Invalid value for VR PN: %r", ("Canary^Phi",))
    assert f.filter(record)
    assert record.getMessage() == "Invalid value for VR PN: '...'"
    try:
        int("PHI-CANARY-7")
    except ValueError as exc:
        record = _record("arcade_pacs.report", "report failed", exc_info=(type(exc), exc, exc.__traceback__))
    assert f.filter(record)
    formatted = logging.Formatter("%(message)s").format(record)
    assert "PHI-CANARY" not in formatted
    assert "Traceback" not in formatted
    assert "report failed [ValueError: invalid literal for int() with base 10: '...' at test_phi.py:" in formatted
    own = _record("arcade_pacs.receive", "C-STORE refused: 0x%04X %s", (0xC210, "unsupported Photometric Interpretation 'RGB'"))
    assert f.filter(own)
    assert own.getMessage().endswith("'RGB'")  # the plugin's own wording is kept
