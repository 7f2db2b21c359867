"""Response and request bodies of the admin API, separate from the database tables.

The OpenAPI page (``/docs``) documents exactly these; a column added to a table does not
leak into the API until it is added here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _as_utc(value: datetime) -> datetime:
    """The database keeps naive UTC; the API says so (RFC 3339 with an offset, as OpenAPI's date-time asks)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


class ModelSummary(BaseModel):
    name: str
    version: str
    device_uid: str
    threshold: float
    engine: str = Field("keras", description="the inference engine serving it: keras, litert (float) or litert-int8")
    engine_reason: str | None = Field(None, description="why that engine serves (the shipped form verified, or why not)")


class Health(BaseModel):
    status: str = Field(description="ok; degraded when the database does not answer (503) or an SR delivery failed for good")
    model_loaded: bool
    database: str
    deliveries_failed: int = Field(0, description="deliveries of result objects (SR, result images, presentation states) that gave up (state failed): they need an operator")
    problems: list[str] = Field(default_factory=list, description="why the status is degraded, one line each")
    version: str
    notice: str


class ScpSummary(BaseModel):
    ae_title: str
    port: int


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    status: str = Field(description="ready, or not ready (then HTTP 503 and the reasons)")
    checks: dict[str, Check] = Field(description="model, database, storage, scp")
    reasons: list[str] = Field(description="what is not ready, one line each")


class ErrorOut(BaseModel):
    source: str = Field(description="job, delivery or report (writing a study's SR)")
    id: int = Field(description="the job's, delivery's or study's database id")
    at: UtcDateTime | None = Field(description="job: when it finished; delivery, report: when it is next due")
    error: str


class Status(BaseModel):
    version: str
    instances_received: int
    results: int
    reports: int
    reports_drawing: int = Field(0, description="reports whose SR is out and whose result images and presentation "
                                                "states are still to be drawn (they follow the SR)")
    jobs: dict[str, int]
    jobs_worker_died: int = Field(
        0, description="running jobs whose worker stopped renewing the lease (its process died or stalled): each "
                       "is retried alone in a worker process, and charged an attempt only for a death while alone")
    deliveries: dict[str, int]
    backlog: dict[str, dict[str, int]] = Field(description="deliveries per destination and state")
    active_associations: int | None = Field(description="DICOM associations open now (None: no SCP here)")
    refused_for_identity: dict[str, int] = Field(
        default_factory=dict,
        description="instances refused because of whose they are: 'patient' (another patient than their study's, "
                    "0xA778), 'study' (SOP Instance UID already held in another study, 0xC409)")
    last_errors: list[ErrorOut]
    model: ModelSummary | None
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
    drawn: bool = Field(True, description="in the SR, the result image and the presentation state "
                                          "(the strongest regions of a positive run)")


class ResultSummary(BaseModel):
    instance_id: int
    probability: float
    present: bool
    threshold: float
    tta: TTAViews
    keyframes: list[int]
    model_version: str
    seconds: float
    created_at: UtcDateTime


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
    finished_at: UtcDateTime | None


class DeliveryOut(BaseModel):
    id: int
    report_id: int
    object_kind: str = Field(description="sr, sc (result image) or gsps (presentation state)")
    sop_instance_uid: str = Field(description="the object sent")
    destination: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    sent_at: UtcDateTime | None


class StudySummary(BaseModel):
    study_instance_uid: str
    received_at: UtcDateTime = Field(description="when its last instance arrived (UTC)")
    runs: int = Field(description="instances (cine runs or images) received")
    analysed: int = Field(description="runs with a result")
    finding: str = Field(description="stenosis, no stenosis, analysing, failed, or waiting")
    probability: float | None = Field(description="the highest run probability")
    sr_state: str = Field(description="delivery state of the newest result (its SR, result images and "
                                      "presentation states): failed, pending, sent, none (worst first)")
    patient_name: str | None = Field(None, description="only when admin.show_patient_identity is set")
    patient_id: str | None = Field(None, description="only when admin.show_patient_identity is set")


class StudyPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[StudySummary]


class KeyframeOut(BaseModel):
    frame_number: int = Field(description="1-based DICOM frame number")
    opacification: float
    probability: float = Field(description="the frame's probability: its highest window (TTA mean)")
    tta: TTAViews | None = Field(description="both views of that window (None on results older than 0004)")
    window_scores: list[float] = Field(description="TTA mean of the 3x3 grid windows, row by row")
    window_original: list[float] | None
    window_flipped: list[float] | None


class RunResult(BaseModel):
    probability: float
    present: bool
    threshold: float
    tta: TTAViews
    model_name: str
    model_version: str
    device_uid: str
    seconds: float
    created_at: UtcDateTime
    keyframes: list[KeyframeOut]
    regions: list[RegionOut]


class RunOut(BaseModel):
    instance_id: int
    sop_instance_uid: str
    series_instance_uid: str
    received_at: UtcDateTime
    frames: int = Field(description="frames scored for opacification (0 before analysis)")
    job: JobSummary | None
    result: RunResult | None


class ResultObjectOut(BaseModel):
    kind: str = Field(description="sr, sc (result image) or gsps (presentation state)")
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    instance_id: int | None = Field(description="the run it is drawn from (None for the SR, which covers the study)")
    download: str = Field(description="the object as a DICOM Part 10 file")
    picture: str | None = Field(None, description="a result image as PNG (sc only)")


class ReportOut(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    created_at: UtcDateTime
    present: bool
    n_instances: int
    predecessor_sop_instance_uid: str | None
    deliveries: list[DeliveryOut]
    objects: list[ResultObjectOut] = Field(description="this version's SR, result images and presentation states")
    derived_pending: bool = Field(False, description="the SR is out; its result images and presentation states are "
                                  "still being drawn (or will be, after a crash): they follow it")
    download: str = Field(description="the SR as a DICOM Part 10 file")
    text: str = Field(description="the SR rendered as text (dsrdump, else the content tree)")


class StudyDetail(BaseModel):
    study: StudySummary
    runs: list[RunOut]
    reports: list[ReportOut]
    report_error: str | None


class ReanalyseAccepted(BaseModel):
    study_instance_uid: str
    runs_queued: int
    runs_busy: int = Field(description="runs already queued or being analysed, left as they are")


class AssociationOut(BaseModel):
    id: int
    calling_aet: str
    called_aet: str
    peer_address: str
    peer_port: int
    started_at: UtcDateTime
    ended_at: UtcDateTime
    outcome: str = Field(description="released, aborted or rejected")
    reason: str | None
    instances_stored: int
    instances_refused: int
    bytes_received: int
    protocol: str = Field("dimse", description="dimse (an association) or dicomweb (a STOW-RS request: "
                                                "calling_aet is the [[dicomweb_senders]] name)")


class AssociationPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AssociationOut]


class DeliveryRetried(BaseModel):
    id: int
    state: str


class Problem(BaseModel):
    """An error answer: FastAPI's ``detail``, a sentence, or the list of invalid request fields."""

    detail: str | list[dict]


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


class _T:
    """``arcade_pacs.training.train.TrainConfig``'s defaults, written here so that the admin does
    not import training (``tests/unit/admin/test_retrain_defaults.py`` holds them equal)."""

    epochs = 6
    steps_per_epoch = 200
    batch_size = 32
    seed = 0
    low_res = 160
    low_res_fraction = 0.5
    learning_rate = 6e-4


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
    learning_rate: float = Field(_T.learning_rate, gt=0, le=1)
    # The network: None keeps the serving model's, as its number of members always is (training.retrain.same_kind).
    backbone: Literal["effb0", "lite0"] | None = None
    init: Literal["scratch", "imagenet"] | None = None
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
    serving_version: str | None = Field(description=(
        "the version of the serving model's Keras file: the candidate is compared with it, Keras against Keras "
        "on the same val images, whichever derived form (LiteRT float or int8) serves it"))
    serving_val_auc: float | None
    promoted: bool
    error: str | None
    created_at: UtcDateTime
    finished_at: UtcDateTime | None
