"""The one Settings class: embedded defaults < config TOML < ``ARCADE_*`` environment variables.

Nothing else in the package reads ``os.environ``. The config file is chosen by ``--config`` on
the command line, else by ``ARCADE_CONFIG``, else ``config/arcade.toml`` when it exists.
A nested key is overridden by ``ARCADE_<SECTION>__<KEY>``, e.g. ``ARCADE_SCP__PORT=11113``;
lists and tables take JSON, e.g. ``ARCADE_SCP__ALLOWED_CALLING_AETS='["*"]'``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, field_validator, model_validator
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


class ScpTlsSettings(BaseModel):
    """DICOM TLS on the SCP's port (PS3.15 B.9, BCP 195 profile: TLS 1.2 or newer).

    Off while ``certificate`` is empty. When on, the port speaks TLS only: a plain association
    is refused at the handshake. With ``ca_certificates`` set, clients must present a
    certificate signed by one of those CAs (mutual TLS).
    """

    certificate: Path | None = None  # PEM server certificate (chain)
    private_key: Path | None = None  # PEM private key of the certificate
    ca_certificates: Path | None = None  # PEM CA bundle: when set, client certificates are required
    handshake_timeout_s: float = Field(10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return self.certificate is not None and str(self.certificate) != ""


class ScpSettings(BaseModel):
    """The DICOM C-STORE / C-ECHO service class provider."""

    ae_title: AETitle = "ARCADE"
    host: str = "0.0.0.0"
    port: int = Field(11112, ge=1, le=65535)
    allowed_calling_aets: list[str] = ["STORESCU", "MODALITY"]
    # Established associations at once; a TCP connection that has not yet sent its whole
    # A-ASSOCIATE-RQ takes no slot (it is bounded by the deadline and the caps below).
    max_associations: int = Field(10, ge=1)
    # Every read on an accepted connection has this deadline: a PDU must arrive whole within it
    # once its first byte did (before and after association), an idle association is aborted
    # after it, and a connection must have associated within it (ARTIM, PS3.8 9.1.5).
    network_timeout_s: float = Field(30.0, gt=0)
    # Open TCP connections from one peer address (associated or not); more are closed at accept.
    # None: twice max_associations (a PACS may forward on every association at once).
    max_connections_per_peer: int | None = Field(None, ge=1)
    # Open TCP connections from all peers together; more are closed at accept. None: 20 x max_associations.
    max_connections: int | None = Field(None, ge=1)
    # Largest P-DATA PDU we receive (PS3.8 D.1 Maximum Length Received), as DCMTK and Orthanc;
    # a longer PDU closes the association. 0 = unlimited.
    max_pdu: int = Field(16384, ge=0)
    max_instance_bytes: int = Field(2_000_000_000, gt=0)
    # A Deflated data set (PS3.5 A.5) may inflate to at most this many bytes (deflate bombs).
    max_inflated_bytes: int = Field(256 * 2**20, gt=0)
    # Most data elements (nested ones included) in one data set: parsing costs ~300 bytes of
    # memory per element, so a file of empty elements is a memory bomb.
    max_elements: int = Field(500_000, gt=0)
    tls: ScpTlsSettings = ScpTlsSettings()

    def accepts_any(self) -> bool:
        return "*" in self.allowed_calling_aets

    def peer_connection_limit(self) -> int:
        """Open connections allowed from one address (``max_connections_per_peer`` or its default)."""
        return self.max_connections_per_peer or 2 * self.max_associations

    def connection_limit(self) -> int:
        """Open connections allowed in all (``max_connections`` or its default)."""
        return self.max_connections or 20 * self.max_associations


class StorageSettings(BaseModel):
    """Where received instances and produced SRs are written (Part 10 files), and how long."""

    root: Path = Path("var/store")
    # Below this much free space on the storage root's file system, associations are refused
    # (A-ASSOCIATE-RJ transient, temporary congestion), /ready answers 503 and /health is
    # degraded: a modality would otherwise get 0xA700 for every instance. 0 = no check.
    min_free_mb: float = Field(2048, ge=0)
    # Pixel data of instances older than this whose study's SR was delivered is deleted (the
    # header is kept for later SRs of the study). 0 = keep forever.
    keep_days: float = Field(0, ge=0)


class DatabaseSettings(BaseModel):
    """SQLAlchemy URL of the database holding instances, jobs, results and deliveries."""

    url: str = "sqlite:///var/arcade.db"


def val_images_dir(arcade_dir: Path) -> Path:
    """Where ARCADE's ``val`` pictures lie under an ARCADE folder: what a serving form is checked on
    when it is built (the one place this path is written)."""
    return Path(arcade_dir) / "stenosis" / "val" / "images"


class ModelSettings(BaseModel):
    """The serving model file (``.keras`` with its ``.json`` sidecar)."""

    path: Path = Path("models/arcade_stenosis.keras")
    threads: int = Field(0, ge=0)  # 0 = TensorFlow's default (all cores)
    # Windows per inference call: 16 keeps a worker under ~1.1 GB peak RSS (`arcade-pacs bench
    # cine`: 1367 MB at 32, 1086 MB at 16, 949 MB at 8, no loss of speed at 16 on 2 cores).
    batch_size: int = Field(16, ge=1, le=256)
    # Which engine serves (arcade_pacs/model/serving.py): "auto" the int8 form when it was
    # validated as a model of its own and verifies at load, else the float LiteRT form when it
    # passes its check, else Keras (the reasons logged); "litert" the float form or refuse to
    # start; "litert-int8" the int8 form or refuse to start; "keras" the .keras file itself
    # (development; loads TensorFlow).
    engine: Literal["auto", "litert", "litert-int8", "keras"] = "auto"
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
    # Attempts of a job: failures that may pass, and worker deaths (a reclaimed lease counts when the
    # job ran alone in its worker process: see arcade_pacs.jobs.claim_job).
    max_attempts: int = Field(3, ge=1)
    # A running job's and a study report's claim lasts this long unless renewed by the
    # heartbeat (every lease_s / 4); a claim whose lease ran out is taken over by another worker.
    lease_s: float = Field(60.0, ge=1)
    # Analysis threads: while one waits for inference, the next decodes and prepares tensors.
    workers: int = Field(2, ge=1, le=16)
    # Niceness added to the worker process `serve` (role all) supervises: receiving and
    # acknowledging C-STOREs (the SCP, in the parent) goes first when both want the CPU; 0 = same.
    worker_nice: int = Field(5, ge=0, le=19)


class AdminSettings(BaseModel):
    """The admin HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # Required for state-changing endpoints (403 while empty) and, when set, for results and
    # keyframe pictures. The service refuses to start bound beyond loopback without one.
    token: str = ""
    # POST /predict: largest upload (enforced while reading) and concurrent predictions (429 beyond).
    predict_max_mb: float = Field(64, gt=0)
    predict_concurrency: int = Field(2, ge=1)
    # The dashboard shows UIDs and dates only; True adds patient names and IDs (read from the
    # stored headers) for a trusted network.
    show_patient_identity: bool = False
    # The dashboard's own upload page: analyses at once (429 beyond), apart from /predict's.
    upload_concurrency: int = Field(2, ge=1)
    # --- Hostile clients (arcade_pacs/admin/guard.py, auth.py, server.py) ---
    # Host names the admin answers to besides localhost, admin.host and this machine's name (an IP
    # address is always accepted): a DNS-rebinding page, whose Host is its own name, is refused
    # (400). Add the names users type (a reverse proxy's name); "*" turns the check off.
    trusted_hosts: list[str] = []
    # The dashboard's reading session after /ui/login (an HttpOnly cookie, never the token).
    session_hours: float = Field(8.0, gt=0, le=24 * 30)
    # Failed authentications per client (bearer token, /ui/login) before it must wait; the wait
    # doubles with each further failure up to auth_max_wait_s (429 with Retry-After meanwhile).
    auth_free_failures: int = Field(5, ge=1)
    auth_max_wait_s: float = Field(300.0, gt=0)
    # Slow clients: a request's headers must arrive within header_timeout_s; its body within
    # body_timeout_s plus one second per body_min_rate bytes (Apache mod_reqtimeout's rule);
    # otherwise the connection is closed. At most max_connections connections (503 beyond) and
    # max_connections_per_client from one address (closed beyond; 0 = no per-client bound, for
    # a reverse proxy in front).
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(20.0, gt=0)
    body_min_rate: int = Field(500, ge=1)
    max_connections: int = Field(100, ge=2)
    max_connections_per_client: int = Field(20, ge=0)
    # HTTPS on the admin port (PEM files); cookies are then Secure. Behind a reverse proxy that
    # ends TLS, list its address here so its X-Forwarded-Proto/-For are believed.
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    forwarded_allow_ips: list[str] = ["127.0.0.1"]


class OutboxSettings(BaseModel):
    """Delivery of SRs: back-off, give-up age and timeouts (PS3.4 B.2.3 statuses decide retries)."""

    # Exponential back-off with jitter: first retry after ~backoff_initial_s, doubling, capped.
    backoff_initial_s: float = Field(10.0, gt=0)
    backoff_cap_s: float = Field(60.0, gt=0)
    # Each delay is drawn uniformly from [delay * (1 - jitter), delay] so senders do not align.
    jitter: float = Field(0.2, ge=0, lt=1)
    # A delivery still failing this long after it was queued becomes `failed` (/health degraded).
    max_age_h: float = Field(72.0, gt=0)
    # TCP connection timeout towards a destination, and the ACSE/DIMSE timeouts after it.
    connect_timeout_s: float = Field(10.0, gt=0)
    network_timeout_s: float = Field(30.0, gt=0)
    # A sender's claim on a delivery (taken over by another sender after it runs out).
    lease_s: float = Field(120.0, ge=1)
    # Seconds between polls of the outbox when idle.
    poll_interval_s: float = Field(1.0, gt=0)


class FaultSettings(BaseModel):
    """Test-only fault injection: SIGKILL this process at a named point (never set in production).

    ``kill_at`` names the point (see :mod:`arcade_pacs.core.faults`); ``kill_key`` restricts it to
    one key (e.g. a SOP Instance UID); ``kill_once`` is a marker file: the kill happens only
    while it does not exist, and creates it, so a restarted process runs on.
    """

    kill_at: str = ""
    kill_key: str = ""
    kill_once: Path | None = None
    delay_at: str = ""  # pause at this point instead (a test kills the process from outside meanwhile)
    delay_key: str = ""
    delay_s: float = Field(0.0, ge=0)


class DestinationTls(BaseModel):
    """DICOM TLS towards one destination (PS3.15 B.9: TLS 1.2 or newer)."""

    enabled: bool = False
    ca_certificates: Path | None = None  # PEM CAs trusted for the peer's certificate; None = system store
    certificate: Path | None = None  # PEM client certificate, when the peer requires one
    private_key: Path | None = None
    check_hostname: bool = True  # the peer's certificate must name `host`


class ObjectKind(StrEnum):
    """The kinds of result object the plugin writes for a study, each sent where it is wanted.

    ``sr``: the Comprehensive 3D SR (TID 1500), for machines and viewers that draw it;
    ``sc``: the result images (Secondary Capture, findings burnt in), for every viewer;
    ``gsps``: the presentation states on the cines (Grayscale Softcopy Presentation State),
    for viewers that overlay them on the original frames.
    """

    SR = "sr"
    SC = "sc"
    GSPS = "gsps"


ALL_OBJECTS = [ObjectKind.SR, ObjectKind.SC, ObjectKind.GSPS]
DEFAULT_OBJECTS = [ObjectKind.SR, ObjectKind.SC]
"""What a destination receives unless it says otherwise: the SR and the result images. The
presentation states are for destinations that ask for them: a viewer may apply a study's
presentation state when it opens the original cine, and a research result should change how the
diagnostic images look only where the site chose that (see config/arcade.toml)."""


def _objects(value: list[ObjectKind]) -> list[ObjectKind]:
    if not value:
        raise ValueError("a destination must receive at least one kind of object (sr, sc, gsps)")
    return sorted(set(value), key=ALL_OBJECTS.index)


class Destination(BaseModel):
    """A node that receives the study's result objects: by C-STORE (``kind = "dimse"``, the
    default: ``ae_title``, ``host``, ``port``) or by STOW-RS (``kind = "dicomweb"``: ``url`` and the
    fields below)."""

    name: str
    ae_title: AETitle | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    tls: DestinationTls = DestinationTls()
    # DICOMweb (PS3.18 10.5, STOW-RS): `url` is the service's base URL (e.g. Orthanc's
    # http://pacs:8042/dicom-web), the SR is POSTed to {url}/studies. HTTPS always verifies the
    # peer's certificate: `tls.ca_certificates` (system store when empty), `tls.check_hostname`,
    # `tls.certificate`/`private_key` when the peer asks for a client certificate.
    kind: Literal["dimse", "dicomweb"] = "dimse"
    url: str | None = None
    token: SecretStr | None = None  # sent as Authorization: Bearer <token>
    username: str | None = None  # HTTP Basic authentication (with `password`)
    password: SecretStr | None = None
    timeout_s: float | None = Field(None, gt=0)  # per request; None = outbox.network_timeout_s

    # Which result objects this destination receives (DEFAULT_OBJECTS unless set; see config/arcade.toml).
    objects: Annotated[list[ObjectKind], AfterValidator(_objects)] = Field(default_factory=lambda: list(DEFAULT_OBJECTS))

    @model_validator(mode="after")
    def _complete(self) -> Destination:
        if self.kind == "dimse" and (self.ae_title is None or self.host is None or self.port is None):
            raise ValueError(f"destination {self.name!r}: ae_title, host and port are required (kind = \"dimse\")")
        if self.kind == "dicomweb":
            if not self.url or not self.url.lower().startswith(("http://", "https://")):
                raise ValueError(f"destination {self.name!r}: kind = \"dicomweb\" needs an http(s) url")
            if self.token is not None and self.username is not None:
                raise ValueError(f"destination {self.name!r}: token (Bearer) or username/password (Basic), not both")
        return self


def _sender_name(value: str) -> str:
    """Shown where the SCP shows a calling AE title (audit, instances): 1-16 printable ASCII."""
    value = value.strip()
    if not 1 <= len(value) <= 16 or not value.isascii() or not value.isprintable():
        raise ValueError(f"invalid DICOMweb sender name {value!r}: 1-16 printable ASCII characters")
    return value


class DicomwebSender(BaseModel):
    """A client allowed to store by STOW-RS: it sends ``Authorization: Bearer <token>``."""

    name: Annotated[str, AfterValidator(_sender_name)]
    token: SecretStr = Field(min_length=16)


class DicomwebSettings(BaseModel):
    """STOW-RS receipt (``POST /dicom-web/studies`` on the admin port of a process running the SCP)."""

    # Largest request body, bytes, counted while it arrives (413 beyond); each instance in it is
    # also bounded by scp.max_instance_bytes, as a C-STORE is.
    max_request_bytes: int = Field(4_000_000_000, gt=0)
    # STOW-RS requests handled at once; more get 503 with Retry-After (as associations beyond
    # scp.max_associations are rejected, transient).
    max_concurrent_requests: int = Field(4, ge=1)


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
    outbox: OutboxSettings = OutboxSettings()
    faults: FaultSettings = FaultSettings()
    destinations: list[Destination] = []
    dicomweb: DicomwebSettings = DicomwebSettings()
    dicomweb_senders: list[DicomwebSender] = []

    @field_validator("dicomweb_senders")
    @classmethod
    def _distinct_senders(cls, senders: list[DicomwebSender]) -> list[DicomwebSender]:
        """Each sender has its own name and token, so the audit names the one who sent."""
        if len({s.name for s in senders}) < len(senders) or len({s.token.get_secret_value() for s in senders}) < len(senders):
            raise ValueError("dicomweb_senders: every sender needs its own name and its own token")
        return senders

    @property
    def arcade_dir(self) -> Path:
        """The ARCADE data set (training, calibration, building serving forms); serving never reads it."""
        return self.data_dir / "arcade"

    @property
    def val_images(self) -> Path:
        """ARCADE's ``val`` pictures, where serving forms are checked when built."""
        return val_images_dir(self.arcade_dir)

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
