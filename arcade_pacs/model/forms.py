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
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from arcade_pacs.model.engine import EngineCheckError, LiteRTEngine, file_digest, versions
from arcade_pacs.model.golden import MAX_ABS_DIFF, Golden, check_golden

log = logging.getLogger(__name__)

LITERT = "litert"
LITERT_INT8 = "litert-int8"
"""The full-integer form: measured against the float form by its gate (training/quantize.py)."""
REBUILD = "rebuild it where the data are: arcade-pacs engine --build"


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
        return bool(self.manifest.get("check", {}).get("passed"))

    def summary(self) -> dict:
        """What ``arcade-pacs engine`` and ``/status`` show of a form."""
        check = self.manifest.get("check", {})
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


def verify(model_path: Path, threshold: float, *, threads: int = 0, batch_size: int = 16) -> tuple[LiteRTEngine, dict]:
    """Load the LiteRT form of ``model_path`` if every check passes; the engine and the golden check.

    ``threshold`` is on the raw (uncalibrated) scale the outputs are compared on. Raises
    :class:`EngineCheckError` with the reason otherwise; no data folder is read.
    """
    model_path = Path(model_path)
    name = model_path.name
    form = shipped(model_path)
    if form is None:
        raise EngineCheckError(f"no LiteRT form of {name} (expected {manifest_path(model_path).name} "
                               f"listing {form_path(model_path).name}): {REBUILD}")
    digest = file_digest(model_path)
    if form.manifest.get("digest") != digest:
        raise EngineCheckError(
            f"the LiteRT form beside {name} was made from another model (manifest names weights "
            f"{str(form.manifest.get('digest'))[:16]}, {name} is {digest[:16]}): {REBUILD}")
    if not form.path.is_file():
        raise EngineCheckError(f"the LiteRT form {form.path.name} listed in the manifest is missing: {REBUILD}")
    form_digest = file_digest(form.path)
    if form_digest != form.entry.get("sha256"):
        raise EngineCheckError(
            f"the LiteRT form {form.path.name} is not the file its manifest checked (sha256 {form_digest[:16]}, "
            f"manifest {str(form.entry.get('sha256'))[:16]}): changed or corrupt; {REBUILD}")
    if not form.check_passed:
        c = form.manifest.get("check", {})
        raise EngineCheckError(
            f"the LiteRT form of {name} failed its val check: max |dp| "
            f"{c.get('max_abs_diff', float('nan')):.2e}, {c.get('flips')} flips")
    golden = Golden.read(model_path)
    if golden is None or golden.digest != digest:
        raise EngineCheckError(f"golden pairs of {name} are missing or of another model: {REBUILD}")
    try:
        engine = LiteRTEngine(form.path, threads, batch_size)
    except Exception as exc:  # a runtime that cannot read the flatbuffer
        raise EngineCheckError(f"LiteRT could not load {form.path.name}: {exc}") from exc
    check = check_golden(engine, golden, threshold, form.tolerance)
    runtime = versions().get("ai-edge-litert")
    built = form.manifest.get("versions", {}).get("ai-edge-litert")
    if runtime != built:
        log.info("LiteRT form of %s built with ai-edge-litert %s, running %s: its golden check passed",
                 name, built, runtime)
    return engine, check
