from pathlib import Path

import pytest
from pydantic import ValidationError

from arcade_pacs.settings import Settings, load_settings

PROJECT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "arcade.toml"


def test_shipped_config_holds_the_documented_defaults(monkeypatch):
    monkeypatch.delenv("ARCADE_CONFIG", raising=False)
    s = load_settings(PROJECT_CONFIG)
    assert (s.scp.ae_title, s.scp.host, s.scp.port) == ("ARCADE", "0.0.0.0", 11112)
    assert s.scp.allowed_calling_aets == ["STORESCU", "MODALITY"]
    assert s.storage.root == Path("var/store")
    assert s.database.url == "sqlite:///var/arcade.db"
    assert s.model.path == Path("models/arcade_stenosis.keras")
    assert s.pipeline.study_quiet_seconds == 10
    assert (s.admin.host, s.admin.port) == ("127.0.0.1", 8000)
    assert [(d.name, d.ae_title, d.host, d.port) for d in s.destinations] == [("pacs", "PACS", "127.0.0.1", 4242)]


def test_every_key_of_the_shipped_config_is_documented():
    lines = PROJECT_CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = lines[i - 1].strip()
            assert above.startswith("#") or "=" in above, f"undocumented key: {line}"


def test_environment_overrides_the_file(monkeypatch, tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[scp]\nport = 2000\nae_title = "FROMFILE"\n[[destinations]]\nname="x"\nae_title="X"\nhost="h"\nport=1\n')
    monkeypatch.setenv("ARCADE_SCP__PORT", "3000")
    monkeypatch.setenv("ARCADE_SCP__ALLOWED_CALLING_AETS", '["*"]')
    monkeypatch.setenv("ARCADE_PIPELINE__STUDY_QUIET_SECONDS", "2.5")
    s = load_settings(cfg)
    assert s.scp.port == 3000
    assert s.scp.ae_title == "FROMFILE"
    assert s.scp.accepts_any()
    assert s.pipeline.study_quiet_seconds == 2.5
    assert s.destinations[0].name == "x"


def test_arcade_config_selects_the_file(monkeypatch, tmp_path):
    cfg = tmp_path / "b.toml"
    cfg.write_text("[admin]\nport = 9999\n")
    monkeypatch.setenv("ARCADE_CONFIG", str(cfg))
    assert Settings().admin.port == 9999


def test_missing_config_file_and_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[scp]\nae_title = "WAY_TOO_LONG_AE_TITLE"\n')
    with pytest.raises(ValidationError, match="invalid AE title"):
        load_settings(bad)


def test_each_destination_chooses_its_kinds_of_result_object(monkeypatch):
    from arcade_pacs.settings import DEFAULT_OBJECTS, Destination, ObjectKind

    monkeypatch.delenv("ARCADE_CONFIG", raising=False)
    assert load_settings(PROJECT_CONFIG).destinations[0].objects == DEFAULT_OBJECTS == [ObjectKind.SR, ObjectKind.SC]
    plain = {"name": "p", "ae_title": "P", "host": "h", "port": 104}
    assert Destination(**plain).objects == [ObjectKind.SR, ObjectKind.SC]
    assert Destination(**plain, objects=["gsps", "sr", "gsps"]).objects == [ObjectKind.SR, ObjectKind.GSPS]
    for wrong in ([], ["pdf"]):
        with pytest.raises(ValidationError):
            Destination(**plain, objects=wrong)
    monkeypatch.setenv("ARCADE_DESTINATIONS", '[{"name": "v", "ae_title": "V", "host": "h", "port": 104, '
                                               '"objects": ["gsps"]}]')
    assert load_settings(PROJECT_CONFIG).destinations[0].objects == [ObjectKind.GSPS]
