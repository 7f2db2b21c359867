"""The one Settings class: embedded defaults < config TOML < ``ARCADE_*`` environment variables.

Nothing else in the package reads ``os.environ``. The config file is chosen by ``--config`` on
the command line, else by ``ARCADE_CONFIG``, else ``config/arcade.toml`` when it exists.
A nested key is overridden by ``ARCADE_<SECTION>__<KEY>``, e.g. ``ARCADE_SCP__PORT=11113``;
lists and tables take JSON, e.g. ``ARCADE_SCP__ALLOWED_CALLING_AETS='["*"]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG = Path("config/arcade.toml")


def _ae_title(value: str) -> str:
    """An AE title is 1-16 characters of the default repertoire, no backslash (PS3.5 6.2)."""
    value = value.strip()
    if not 1 <= len(value) <= 16 or "\\" in value or not value.isascii():
        raise ValueError(f"invalid AE title {value!r}: 1-16 ASCII characters, no backslash")
    return value


AETitle = Annotated[str, AfterValidator(_ae_title)]


class ScpSettings(BaseModel):
    """The DICOM C-STORE / C-ECHO service class provider."""

    ae_title: AETitle = "ARCADE"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    allowed_calling_aets: list[str] = ["STORESCU", "MODALITY"]
    max_associations: int = Field(10, ge=1)
    network_timeout_s: float = Field(30.0, gt=0)
    max_pdu: int = Field(0, ge=0)  # 0 = no limit
    max_instance_bytes: int = Field(2_000_000_000, gt=0)

    def accepts_any(self) -> bool:
        return "*" in self.allowed_calling_aets


class StorageSettings(BaseModel):
    """Where received instances and produced SRs are written (Part 10 files)."""

    root: Path = Path("var/store")


class DatabaseSettings(BaseModel):
    """SQLAlchemy URL of the database holding instances, jobs, results and deliveries."""

    url: str = "sqlite:///var/arcade.db"


class ModelSettings(BaseModel):
    """The serving model file (``.keras`` with its ``.json`` sidecar)."""

    path: Path = Path("models/arcade_effb0.keras")
    threads: int = Field(0, ge=0)  # 0 = TensorFlow's default (all cores)
    # Windows per inference call: 16 keeps a worker under ~1.1 GB peak RSS (`arcade-pacs bench
    # cine`: 1367 MB at 32, 1086 MB at 16, 949 MB at 8, no loss of speed at 16 on 2 cores).
    batch_size: int = Field(16, ge=1, le=256)
    # Which engine serves (arcade_pacs/model/engine.py): "auto" the fastest that gives Keras'
    # answers (LiteRT when its checked form is built, Keras meanwhile), "litert" that form or
    # refuse to start, "keras" the .keras file itself.
    engine: Literal["auto", "litert", "keras"] = "auto"
    # Windows per LiteRT call (the batcher still packs up to batch_size windows per batch):
    # XNNPACK on 2 cores measured 134 passes/s at 4, 120 at 8, 106 at 16 (`arcade-pacs bench`).
    litert_batch: int = Field(4, ge=1, le=256)
    # Val images a derived engine is checked on when it is built (0 = the whole val split).
    check_images: int = Field(0, ge=0)


class PipelineSettings(BaseModel):
    """Analysis parameters."""

    study_quiet_seconds: float = Field(10.0, ge=0)
    keyframes: int = Field(8, ge=1)
    max_frames: int = Field(2000, ge=1)
    max_rows: int = Field(4096, ge=1)
    max_columns: int = Field(4096, ge=1)
    poll_interval_s: float = Field(0.5, gt=0)
    max_attempts: int = Field(3, ge=1)
    # Analysis threads: while one waits for inference, the next decodes and prepares tensors.
    workers: int = Field(2, ge=1, le=16)


class AdminSettings(BaseModel):
    """The admin HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    token: str = ""  # required for state-changing endpoints when set


class Destination(BaseModel):
    """A DICOM node that receives every SR by C-STORE."""

    name: str
    ae_title: AETitle
    host: str
    port: int = Field(ge=1, le=65535)


class Settings(BaseSettings):
    """All configuration of one ARCADE PACS installation."""

    model_config = SettingsConfigDict(
        env_prefix="ARCADE_", env_nested_delimiter="__", extra="ignore"
    )

    config_file: Path | None = Field(default=None, exclude=True)
    data_dir: Path = Path("../shared/data")  # ARCADE_DATA_DIR: holds arcade/ and dicom/
    scp: ScpSettings = ScpSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    model: ModelSettings = ModelSettings()
    pipeline: PipelineSettings = PipelineSettings()
    admin: AdminSettings = AdminSettings()
    destinations: list[Destination] = []

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _config_path(init_settings)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


def _config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    explicit = init_settings().get("config_file")
    if explicit is None:
        explicit = os.environ.get("ARCADE_CONFIG") or None
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from defaults, the TOML file (``config`` or ``ARCADE_CONFIG``) and the environment."""
    return Settings(config_file=Path(config) if config else None, **overrides)
