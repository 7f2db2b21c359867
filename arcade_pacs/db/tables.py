"""Database tables: the durable state of every instance, job, result, report and delivery.

Every state a piece of work can be in lives here, not in memory, so a crash loses nothing:
a restarted service finds queued jobs, quiet studies and pending deliveries where it left them.
Times are naive UTC (:func:`utcnow`), the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from arcade_pacs.core.findings import Finding, Region


def utcnow() -> datetime:
    """Current time as naive UTC (what every timestamp column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSON, list: JSON}


class Study(Base):
    """A study seen by the SCP; ``needs_report`` is set by each new instance, cleared by the reporter."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    last_received_at: Mapped[datetime] = mapped_column(default=utcnow)
    needs_report: Mapped[bool] = mapped_column(default=True, index=True)
    # Writing the SR failed this many times in a row (reset when one is written); the reason
    # and when to try again, so a study that cannot be reported backs off instead of looping.
    report_attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    report_error: Mapped[str | None] = mapped_column(Text)
    report_due_at: Mapped[datetime | None]
    # A reporter's claim on writing this study's SR (see arcade_pacs.db.claims).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    # Whose study this is (arcade_pacs.dicom.identity.PatientKey): digests of the Patient ID (or Name
    # and Birth Date when it is empty) and of its issuer. An instance of another patient is
    # refused. None on studies received before the key was kept: taken from their first instance.
    patient_key: Mapped[str | None] = mapped_column(String(64))
    patient_issuer_key: Mapped[str | None] = mapped_column(String(64))

    instances: Mapped[list[Instance]] = relationship(back_populates="study")
    reports: Mapped[list[Report]] = relationship(back_populates="study", order_by="Report.id")


class Instance(Base):
    """One received SOP instance, stored as a Part 10 file under the storage root."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(Integer)
    calling_aet: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # SHA-256 of the stored Part 10 file: a resend with the same digest changes nothing; new
    # content raises the generation, and only a job that analysed the newest one may record.
    digest: Mapped[str | None] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(default=1, server_default="1")
    # When retention (storage.keep_days) deleted the pixel data; the header file stays.
    purged_at: Mapped[datetime | None]

    study: Mapped[Study] = relationship(back_populates="instances")
    job: Mapped[Job | None] = relationship(back_populates="instance", uselist=False)
    result: Mapped[Result | None] = relationship(back_populates="instance", uselist=False)


class Job(Base):
    """The analysis of one instance. ``state`` is a :class:`arcade_pacs.jobs.JobState` value."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(64))  # the lease owner while running
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    # While running: the claim expires then unless the worker's heartbeat renews it.
    lease_until: Mapped[datetime | None]
    # The instance generation this run analyses (set at claim; checked before recording).
    generation: Mapped[int] = mapped_column(default=0, server_default="0")
    # The run was claimed to run alone in its worker process (nothing else analysed beside it):
    # if that process dies, this job killed it, and the takeover counts as an attempt. A run
    # beside others is not charged for its process's death; it is retried alone (jobs.claim).
    alone: Mapped[bool] = mapped_column(default=False, server_default=false())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    instance: Mapped[Instance] = relationship(back_populates="job")


class Result(Base):
    """The analysis result of one instance (the latest; re-analysis replaces it)."""

    __tablename__ = "results"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id"), unique=True)
    probability: Mapped[float] = mapped_column(Float)
    present: Mapped[bool]
    threshold: Mapped[float] = mapped_column(Float)
    tta_original: Mapped[float] = mapped_column(Float)
    tta_flipped: Mapped[float] = mapped_column(Float)
    keyframes: Mapped[list] = mapped_column(JSON)  # 1-based DICOM frame numbers
    regions: Mapped[list] = mapped_column(JSON)  # [Region.to_json(), ...]
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    device_uid: Mapped[str] = mapped_column(String(64))
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    instance: Mapped[Instance] = relationship(back_populates="result")
    frames: Mapped[list[FrameScore]] = relationship(
        back_populates="result", cascade="all, delete-orphan", order_by="FrameScore.frame_number"
    )

    @property
    def finding(self) -> Finding:
        """The stored result as the pipeline's typed :class:`~arcade_pacs.core.findings.Finding`."""
        by_frame = {f.frame_number: f.probability for f in self.frames}
        return Finding(
            probability=self.probability,
            threshold=self.threshold,
            frame_numbers=list(self.keyframes),
            frame_probabilities=[by_frame.get(n) for n in self.keyframes],
            tta_original=self.tta_original,
            tta_flipped=self.tta_flipped,
            regions=[Region.from_json(r) for r in self.regions],
        )


class FrameScore(Base):
    """Per-frame scores of a result (every frame's opacification; model scores for keyframes)."""

    __tablename__ = "frame_scores"
    __table_args__ = (UniqueConstraint("result_id", "frame_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    frame_number: Mapped[int]  # 1-based DICOM frame number
    opacification: Mapped[float] = mapped_column(Float)
    probability: Mapped[float | None] = mapped_column(Float)  # None: not a keyframe
    window_scores: Mapped[list | None] = mapped_column(JSON)  # TTA mean per grid window
    # The two TTA views per grid window (keyframes only), so the admin can show where and how
    # much the model's answer changes when the image is mirrored (None on older rows).
    window_original: Mapped[list | None] = mapped_column(JSON)
    window_flipped: Mapped[list | None] = mapped_column(JSON)

    result: Mapped[Result] = relationship(back_populates="frames")


class Report(Base):
    """An SR written for a study; a newer one names its predecessor (PS3.3 C.17.2.3)."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    path: Mapped[str] = mapped_column(Text)
    present: Mapped[bool]
    n_instances: Mapped[int]
    # Digest of what the SR says (each run's SOP Instance UID, file digest and outcome): a
    # study is never reported twice for the same content.
    content_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The SR is committed and queued first; its result images and presentation states follow in
    # a second transaction (arcade_pacs.report.reporter). True in between, and after a crash
    # there, until a reporter makes them: never lost, never holding the SR back.
    derived_pending: Mapped[bool] = mapped_column(default=False, server_default=false())

    study: Mapped[Study] = relationship(back_populates="reports")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="report")
    # Every object of this version of the study's result: its SR, result images and presentation
    # states; a newer report replaces them all together.
    objects: Mapped[list[ResultObject]] = relationship(back_populates="report", order_by="ResultObject.id")


class ResultObject(Base):
    """One DICOM object of a report: the SR, a result image (SC) or a presentation state (GSPS).

    ``kind`` is a :class:`arcade_pacs.settings.ObjectKind` value; ``instance_id`` is the run an
    image or presentation state is drawn from (``None`` for the SR, which covers the study).
    """

    __tablename__ = "result_objects"

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    report: Mapped[Report] = relationship(back_populates="objects")
    deliveries: Mapped[list[Delivery]] = relationship(back_populates="object")


class Delivery(Base):
    """One result object to one destination. ``state`` is a :class:`arcade_pacs.send.outbox.DeliveryState` value.

    The destination is kept by name and resolved from the configuration when sending, so a
    changed address takes effect at once and a removed destination's rows are cancelled.
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    # The object sent (any kind); report_id is its report's, so a newer report supersedes all at once.
    object_id: Mapped[int] = mapped_column(ForeignKey("result_objects.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64), index=True)
    # A sender's claim while it sends (see arcade_pacs.db.claims).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When it was queued (or re-queued by an admin): outbox.max_age_h counts from here.
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    report: Mapped[Report] = relationship(back_populates="deliveries")
    object: Mapped[ResultObject] = relationship(back_populates="deliveries")

    @property
    def path(self) -> str:
        """The stored Part 10 file this delivery sends."""
        return self.object.path


class RetrainRun(Base):
    """One retraining request: its parameters, progress and outcome (candidate promoted or not)."""

    __tablename__ = "retrain_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict] = mapped_column(JSON)
    progress: Mapped[dict | None] = mapped_column(JSON)
    candidate_path: Mapped[str | None] = mapped_column(Text)
    candidate_version: Mapped[str | None] = mapped_column(String(64))
    candidate_val_auc: Mapped[float | None] = mapped_column(Float)
    serving_version: Mapped[str | None] = mapped_column(String(64))
    serving_val_auc: Mapped[float | None] = mapped_column(Float)
    promoted: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Association(Base):
    """An audit row per DICOM association the SCP saw (and per STOW-RS request): who called, from
    where, what came of it.

    Written when the association ends (released, aborted) or is rejected (PS3.8 7.1: A-RELEASE,
    A-ABORT, A-ASSOCIATE-RJ). No patient data: AE titles, addresses, counts and times only.
    """

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(primary_key=True)
    calling_aet: Mapped[str] = mapped_column(String(16))
    called_aet: Mapped[str] = mapped_column(String(16))
    peer_address: Mapped[str] = mapped_column(String(255))
    peer_port: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16), index=True)  # released | aborted | rejected
    reason: Mapped[str | None] = mapped_column(Text)
    instances_stored: Mapped[int] = mapped_column(default=0)
    instances_refused: Mapped[int] = mapped_column(default=0)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    # "dimse" for an association; "dicomweb" for a STOW-RS request (calling_aet then holds the
    # [[dicomweb_senders]] name, called_aet the SCP's AE title).
    protocol: Mapped[str] = mapped_column(String(16), default="dimse", server_default="dimse")


class ReceiptConflict(Base):
    """An instance refused because of whose it is (audit): its patient differs from its study's
    (``kind`` "patient"), or its SOP Instance UID is already held in another study ("study").

    UIDs, the calling AE title, the study's id and the time: no patient data.
    """

    __tablename__ = "receipt_conflicts"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"))  # the study it conflicts with
    calling_aet: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
