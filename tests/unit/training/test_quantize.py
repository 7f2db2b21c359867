"""int8 where it holds: the full-integer form is built from train windows, judged against the
float form on val by the stated gate, listed in the manifest with its figures, and never
disturbs the float form that serves."""

import json
import shutil

import numpy as np
import pytest

from arcade_pacs.model import build, forms, serving
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.engine import EngineCheckError, LiteRTEngine, file_digest
from arcade_pacs.settings import ModelSettings
from arcade_pacs.training import quantize
from arcade_pacs.training.data import load_split


class Scores:
    """An engine whose window scores are the windows' mean brightness, plus ``shift``."""

    def __init__(self, shift=0.0):
        self.shift = shift

    def predict(self, tensors):
        return np.clip(np.asarray(tensors)[..., 0].mean(axis=(1, 2)) + self.shift, 0, 1)


@pytest.fixture(scope="module")
def val(arcade_dir):
    return load_split(arcade_dir, "val", 6)


def test_the_same_scores_pass_the_gate(val):
    result = quantize.gate(Scores(), Scores(), val, 0.3)
    assert result["passed"]
    assert result["auc_drop"] == 0
    assert result["flips"] == 0
    assert result["windows"] == 6 * 9


def test_scores_moved_across_the_threshold_fail_the_gate_by_their_flips(val):
    brightness = np.median(Scores().predict(np.concatenate(
        [quantize.frame_tensors(i.astype(np.float32) / 255) for i in val.images])))
    result = quantize.gate(Scores(), Scores(shift=0.05), val, float(brightness))
    assert result["auc_drop"] == 0  # a constant shift keeps the ranking...
    assert result["flip_fraction"] > quantize.MAX_FLIP_FRACTION  # ...but not the decisions
    assert not result["passed"]


def test_calibration_windows_are_every_grid_window_of_train_images_held_once(arcade_dir):
    windows = quantize.calibration_windows(load_split(arcade_dir, "train", 2))
    assert windows.shape == (18, 224, 224, 3)
    assert windows.strides[-1] == 0


def test_int8_form_is_built_gated_and_listed_beside_the_served_float_form(tmp_path, tiny_model, arcade_dir):
    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, model)
    shutil.copy(ModelInfo.sidecar(tiny_model), ModelInfo.sidecar(model))
    with pytest.raises(EngineCheckError, match="engine --build first"):
        quantize.quantize(model, arcade_dir, limit_val=2, calibration_images=2)
    build.build(model, 0.5, arcade_dir / "stenosis" / "val" / "images", ModelSettings(check_images=2))

    entry = quantize.quantize(model, arcade_dir, limit_val=2, calibration_images=2)

    int8_path = forms.form_path(model, forms.LITERT_INT8)
    assert int8_path.name == "tiny_int8.tflite"
    assert entry["sha256"] == file_digest(int8_path)
    assert entry["served"] is False
    gate = entry["gate"]
    assert gate["windows"] == 18
    assert gate["calibration_windows"] == 18
    assert set(gate["passes_per_s"]) == {"litert", "litert-int8"}
    assert gate["passed"] == (gate["auc_drop"] <= 0.003 and gate["flip_fraction"] <= 0.01)
    manifest = json.loads(forms.manifest_path(model).read_text())
    assert [e["kind"] for e in manifest["forms"]] == ["litert", "litert-int8"]
    # full-integer: the converted graph holds int8 tensors, and it takes the float form's input
    engine = LiteRTEngine(int8_path, 1, 2)
    assert np.int8 in {d["dtype"] for d in engine._it.get_tensor_details()}
    assert engine.predict(np.full((2, 224, 224, 3), 0.5, np.float32)).shape == (2,)
    # the float form still serves, verified as before
    selection = serving.select(model, ModelSettings(path=model, engine="litert"), 0.5)
    assert selection.engine.path == model.with_suffix(".tflite")
    # a forced rebuild of the float form of the same weights keeps the int8 form and its gate listed
    build.build(model, 0.5, arcade_dir / "stenosis" / "val" / "images", ModelSettings(check_images=2), force=True)
    rebuilt = json.loads(forms.manifest_path(model).read_text())
    assert [e["kind"] for e in rebuilt["forms"]] == ["litert", "litert-int8"]
    assert rebuilt["forms"][1] == manifest["forms"][1]
