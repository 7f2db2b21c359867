"""The shipped serving forms of a model: where they lie, what their manifest says, and the check
every load makes, with no data folder.

Beside ``<stem>.keras`` (the source of truth) the model package holds:

- ``<stem>.tflite``: the LiteRT form, float32, builtin ops (what serves);
- ``<stem>_forms.json``: its manifest: the SHA-256 of the ``.keras`` file it was derived from,
  each form's kind, file, SHA-256 and tolerance, the ``val`` check's figures (max |dp|, flips,
  windows), the runtime versions and the passes per second measured at build;
- ``<stem>_golden.npz``: the golden pairs (:mod:`.golden`).

:func:`verify` loads a form only when all of these agree: the manifest names this very
``.keras`` file (its digest), the form is the file the manifest checked (its digest: one
changed byte is refused), the build's ``val`` check passed, the golden pairs belong to the same
weights, and the loaded form gives their outputs within the tolerance with no decision flipped.
Each refusal says which of these failed and how to make a new form
(``arcade-pacs engine --build``, where the data are).

The full-integer form (``<stem>_int8.tflite``, kind ``litert-int8``) is listed in the same
manifest and verified by the same steps, with two differences that follow from its being
validated as a model in its own right (:mod:`arcade_pacs.training.quantize`): it is servable
when its own validation passed (``own.passed``), and its golden reference is its own outputs on
the golden windows (``own.golden``, within :data:`INT8_TOLERANCE`, no decision flipped at its
own threshold), not Keras'.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.model.engine import EngineCheckError, LiteRTEngine, file_digest, versions
from arcade_pacs.model.golden import MAX_ABS_DIFF, Golden, check_golden

log = logging.getLogger(__name__)

LITERT = "litert"
LITERT_INT8 = "litert-int8"
"""The full-integer form: measured against the float form by its gate and validated as a model
of its own (training/quantize.py)."""
REBUILD = "rebuild it where the data are: arcade-pacs engine --build"
REBUILD_INT8 = "rebuild it where the data are: arcade-pacs engine --int8"
INT8_TOLERANCE = 0.01
"""Largest difference from its own golden outputs an int8 form may show at load: about two
steps of its output quantisation (1/256), room for another CPU's integer kernels."""


def rebuild_hint(kind: str) -> str:
    """How to make a form of ``kind`` again (each refusal ends with it)."""
    return REBUILD_INT8 if kind == LITERT_INT8 else REBUILD


def form_path(model_path: Path, kind: str = LITERT) -> Path:
    """Where the form of ``kind`` lies beside ``model_path`` (``<stem>.tflite``, ``<stem>_int8.tflite``)."""
    model_path = Path(model_path)
    if kind == LITERT:
        return model_path.with_suffix(".tflite")
    if kind == LITERT_INT8:
        return model_path.with_name(model_path.stem + "_int8.tflite")
    raise ValueError(f"unknown form kind {kind!r}")


def manifest_path(model_path: Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + "_forms.json")


@dataclass(frozen=True)
class Form:
    """One form on disk, as its manifest describes it."""

    model_path: Path
    manifest: dict
    entry: dict  # the manifest's line for this form: kind, file, sha256, tolerance, precision

    @property
    def path(self) -> Path:
        """Beside the model under its stem (a promotion renames the files; the digests still hold)."""
        return form_path(self.model_path, self.kind)

    @property
    def kind(self) -> str:
        return self.entry["kind"]

    @property
    def tolerance(self) -> float:
        return float(self.entry.get("tolerance", MAX_ABS_DIFF))

    @property
    def check_passed(self) -> bool:
        """The float form's val check against Keras (the build's)."""
        return bool(self.manifest.get("check", {}).get("passed"))

    @property
    def own(self) -> dict:
        """The int8 form's own validation (empty for the float form, or an int8 form made before it)."""
        return self.entry.get("own") or {}

    @property
    def servable(self) -> bool:
        """Whether the manifest lets this form serve: its val check (float) or own validation (int8)."""
        return bool(self.own.get("passed")) if self.kind == LITERT_INT8 else self.check_passed

    @property
    def rebuild(self) -> str:
        return rebuild_hint(self.kind)

    def expected(self, golden: Golden) -> np.ndarray:
        """The outputs this form must reproduce on the golden windows: Keras' (float), its own (int8)."""
        if self.kind == LITERT_INT8:
            return np.asarray(self.own.get("golden", []), dtype=np.float32)
        return golden.probabilities

    def summary(self) -> dict:
        """What ``arcade-pacs engine`` and ``/status`` show of a form."""
        check = self.manifest.get("check", {})
        if self.kind == LITERT_INT8:
            gate = self.entry.get("gate", {})
            check = {"passed": self.servable, "images": self.own.get("val", {}).get("n_images"),
                     **{k: gate.get(k) for k in ("windows", "max_abs_diff", "flips")}}
        return {
            "kind": self.kind, "file": self.entry["file"], "sha256": self.entry.get("sha256", "")[:16],
            "model_digest": self.manifest.get("digest", "")[:16], "tolerance": self.tolerance,
            "check": {k: check.get(k) for k in ("passed", "images", "windows", "max_abs_diff", "flips")},
            "built_with": self.manifest.get("versions", {}), "created": self.manifest.get("created"),
            "passes_per_s": self.manifest.get("passes_per_s", {}),
        }


def write_manifest(model_path: Path, manifest: dict, staging: Path) -> Path:
    """Replace the manifest of ``model_path`` atomically (written in ``staging``, on the same file
    system, then renamed): a reader finds the old manifest or the new one, never half of one."""
    staged = Path(staging) / "manifest.json"
    staged.write_text(json.dumps(manifest, indent=2) + "\n")
    return staged.replace(manifest_path(model_path))


def read_manifest(model_path: Path) -> dict | None:
    path = manifest_path(model_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineCheckError(f"the forms manifest {path} is not valid JSON ({exc}): {REBUILD}") from None


def shipped(model_path: Path, kind: str = LITERT) -> Form | None:
    """The form of ``kind`` its manifest lists beside ``model_path`` (unchecked), if any."""
    manifest = read_manifest(model_path)
    if manifest is None:
        return None
    for entry in manifest.get("forms", []):
        if entry.get("kind") == kind:
            return Form(Path(model_path), manifest, entry)
    return None


def current(model_path: Path, digest: str | None = None, kind: str = LITERT) -> Form | None:
    """The form of ``kind`` if its manifest names the ``.keras`` file as it is now and the form is
    the file the manifest checked (else ``None``: there is none to serve, build one)."""
    form = shipped(model_path, kind)
    if form is None or form.manifest.get("digest") != (digest or file_digest(model_path)):
        return None
    return form if form.path.is_file() and file_digest(form.path) == form.entry.get("sha256") else None


def verify(model_path: Path, threshold: float, *, kind: str = LITERT, threads: int = 0,
           batch_size: int = 16) -> tuple[LiteRTEngine, dict]:
    """Load the form of ``kind`` beside ``model_path`` if every check passes; the engine and the golden check.

    ``threshold`` is on the raw (uncalibrated) scale the outputs are compared on: the model's
    (float form), the form's own (int8). Raises :class:`EngineCheckError` with the reason
    otherwise; no data folder is read.
    """
    model_path = Path(model_path)
    name = model_path.name
    what = "LiteRT form" if kind == LITERT else "int8 form"
    form = shipped(model_path, kind)
    if form is None:
        raise EngineCheckError(f"no {what} of {name} (expected {manifest_path(model_path).name} "
                               f"listing {form_path(model_path, kind).name}): {rebuild_hint(kind)}")
    digest = file_digest(model_path)
    if form.manifest.get("digest") != digest:
        raise EngineCheckError(
            f"the {what} beside {name} was made from another model (manifest names weights "
            f"{str(form.manifest.get('digest'))[:16]}, {name} is {digest[:16]}): {form.rebuild}")
    if not form.path.is_file():
        raise EngineCheckError(f"the {what} {form.path.name} listed in the manifest is missing: {form.rebuild}")
    form_digest = file_digest(form.path)
    if form_digest != form.entry.get("sha256"):
        raise EngineCheckError(
            f"the {what} {form.path.name} is not the file its manifest checked (sha256 {form_digest[:16]}, "
            f"manifest {str(form.entry.get('sha256'))[:16]}): changed or corrupt; {form.rebuild}")
    if not form.servable:
        if kind == LITERT_INT8:
            val = form.own.get("val", {})
            raise EngineCheckError(
                f"the int8 form of {name} did not pass its own validation on val "
                f"({form.own.get('rule', 'none recorded')}; measured: {form.own.get('checks')}, "
                f"sensitivity {val.get('image_sensitivity')}, FPR {val.get('negative_window_fpr')})")
        c = form.manifest.get("check", {})
        raise EngineCheckError(
            f"the LiteRT form of {name} failed its val check: max |dp| "
            f"{c.get('max_abs_diff', float('nan')):.2e}, {c.get('flips')} flips")
    golden = Golden.read(model_path)
    if golden is None or golden.digest != digest:
        raise EngineCheckError(f"golden pairs of {name} are missing or of another model: {REBUILD}")
    expected = form.expected(golden)
    if expected.shape != golden.probabilities.shape:
        raise EngineCheckError(f"the {what} of {name} lists no golden outputs for these golden windows: {form.rebuild}")
    try:
        engine = LiteRTEngine(form.path, threads, batch_size)
    except Exception as exc:  # a runtime that cannot read the flatbuffer
        raise EngineCheckError(f"LiteRT could not load {form.path.name}: {exc}") from exc
    engine.name = kind
    check = check_golden(engine, golden, threshold, form.tolerance, expected)
    runtime = versions().get("ai-edge-litert")
    built = form.manifest.get("versions", {}).get("ai-edge-litert")
    if runtime != built:
        log.info("%s of %s built with ai-edge-litert %s, running %s: its golden check passed",
                 what, name, built, runtime)
    return engine, check
