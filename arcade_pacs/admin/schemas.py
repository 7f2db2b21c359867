"""Response and request bodies of the admin API, separate from the database tables.

The OpenAPI page (``/docs``) documents exactly these; a column added to a table does not
leak into the API until it is added here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from arcade_pacs.training.train import TrainConfig


class ModelSummary(BaseModel):
    name: str
    version: str
    device_uid: str
    threshold: float
    engine: str = Field("keras", description="the inference engine serving it: keras or litert")


class Health(BaseModel):
    status: str = Field(description="ok, or degraded when the database does not answer")
    model_loaded: bool
    database: str
    version: str
    notice: str


class ScpSummary(BaseModel):
    ae_title: str
    port: int


class Status(BaseModel):
    instances_received: int
    results: int
    reports: int
    jobs: dict[str, int]
    deliveries: dict[str, int]
    model: ModelSummary
    scp: ScpSummary
    destinations: list[str]
    uptime_s: float
    notice: str


class TTAViews(BaseModel):
    original: float = Field(description="probability of the view as given")
    flipped: float = Field(description="probability of the horizontally mirrored view")


class RegionOut(BaseModel):
    frame_number: int = Field(description="1-based DICOM frame number")
    box: list[float] = Field(description="x0, y0, x1, y1 in source pixels")
    probability: float


class ResultSummary(BaseModel):
    instance_id: int
    probability: float
    present: bool
    threshold: float
    tta: TTAViews
    keyframes: list[int]
    model_version: str
    seconds: float
    created_at: datetime


class FrameOut(BaseModel):
    frame_number: int
    opacification: float
    probability: float | None
    window_scores: list[float] | None


class ResultDetail(ResultSummary):
    regions: list[RegionOut]
    frames: list[FrameOut]


class JobSummary(BaseModel):
    state: str
    attempts: int
    last_error: str | None


class InstanceResultOut(BaseModel):
    instance_id: int
    job: JobSummary | None
    result: ResultDetail | None


class JobOut(JobSummary):
    id: int
    instance_id: int
    finished_at: datetime | None


class DeliveryOut(BaseModel):
    id: int
    report_id: int
    destination: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    sent_at: datetime | None


class DeliveryRetried(BaseModel):
    id: int
    state: str


class PredictResponse(BaseModel):
    """The original ARCADE service's keys, then what explains them."""

    diagnosis: str
    confidence: float = Field(description="probability of the stated diagnosis")
    raw_score: float = Field(description="probability of stenosis")
    is_abnormal: bool
    tta_details: TTAViews
    threshold: float
    keyframes: list[int]
    regions: list[RegionOut]
    model_version: str
    notice: str


_T = TrainConfig


class RetrainRequest(BaseModel):
    """Parameters of a retraining run; defaults are ``arcade-pacs train``'s (``TrainConfig``).

    The data always come from the configuration (``data_dir``), never from the request: a
    request must not be able to choose what the serving model is trained or judged on.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(_T.epochs, ge=1, le=1000)
    steps_per_epoch: int = Field(_T.steps_per_epoch, ge=1)
    batch_size: int = Field(_T.batch_size, ge=2, le=256)
    seed: int = _T.seed
    low_res: int = Field(_T.low_res, ge=32, le=224)
    low_res_fraction: float = Field(_T.low_res_fraction, ge=0, le=1)
    limit_train: int | None = Field(None, ge=1)
    limit_val: int | None = Field(None, ge=1)


class RetrainAccepted(BaseModel):
    id: int
    state: str


class RetrainRunOut(BaseModel):
    id: int
    state: str
    params: dict
    progress: dict | None
    candidate_version: str | None
    candidate_val_auc: float | None
    serving_version: str | None
    serving_val_auc: float | None
    promoted: bool
    error: str | None
    created_at: datetime
    finished_at: datetime | None
