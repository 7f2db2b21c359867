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


def test_own_validation_follows_the_stated_rule(val):
    """The int8 form as a model of its own: its threshold and calibration fitted on its own val
    views; passed only when the AUC holds against the float form and the operating targets hold."""
    holds = quantize.own_validation(Scores(), val, {"auc_drop": 0.0}, 0.10)
    figures = holds["val"]
    assert holds["checks"] == {
        "auc": True,
        "sensitivity": figures["image_sensitivity"] >= quantize.MIN_SENSITIVITY,
        "fpr": figures["negative_window_fpr"] <= quantize.MAX_FPR,
    }
    assert holds["passed"] == all(holds["checks"].values())
    assert figures["threshold"] == holds["threshold"]
    assert figures["negative_window_fpr"] <= 0.10  # the threshold is chosen for the target FPR
    assert set(holds["calibration"]) >= {"a", "b"}
    dropped = quantize.own_validation(Scores(), val, {"auc_drop": quantize.MAX_AUC_DROP + 0.001}, 0.10)
    assert dropped["checks"]["auc"] is False
    assert dropped["passed"] is False


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, tiny_model, arcade_dir):
    """The tiny model with its float form, golden pairs and int8 form (built once for the module)."""
    model = tmp_path_factory.mktemp("int8") / "tiny.keras"
    shutil.copy(tiny_model, model)
    shutil.copy(ModelInfo.sidecar(tiny_model), ModelInfo.sidecar(model))
    build.build(model, 0.5, arcade_dir / "stenosis" / "val" / "images", ModelSettings(check_images=2))
    quantize.quantize(model, arcade_dir, limit_val=4, calibration_images=2)
    return model


@pytest.fixture
def int8_model(tmp_path, quantized):
    """A private copy of the quantized tiny model (each test may change its manifest or files)."""
    for path in quantized.parent.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    return tmp_path / quantized.name


def _edit_int8(model, change) -> dict:
    manifest = json.loads(forms.manifest_path(model).read_text())
    change(next(e for e in manifest["forms"] if e["kind"] == forms.LITERT_INT8))
    forms.manifest_path(model).write_text(json.dumps(manifest))
    return manifest


def _passed(entry):
    entry["own"]["passed"] = entry["served"] = True


def test_the_int8_entry_carries_its_own_identity_and_golden_outputs(int8_model):
    info = ModelInfo.read(int8_model)
    entry = forms.shipped(int8_model, forms.LITERT_INT8).entry
    own = entry["own"]
    assert entry["tolerance"] == forms.INT8_TOLERANCE
    assert entry["served"] == own["passed"]
    assert own["version"] == f"{info.version}-int8"
    assert own["device_uid"] != info.device_uid
    assert own["device_uid"] == quantize.device_uid_for(entry["sha256"])  # follows the int8 file
    assert own["val"]["n_images"] == 4
    golden = forms.Golden.read(int8_model)
    assert len(own["golden"]) == len(golden.probabilities)
    int8 = LiteRTEngine(forms.form_path(int8_model, forms.LITERT_INT8), 1, 4)
    np.testing.assert_allclose(int8.predict(golden.tensors()), own["golden"], atol=1e-6)


def test_an_int8_form_that_failed_its_own_validation_is_never_served(int8_model):
    _edit_int8(int8_model, lambda e: e["own"].update(passed=False))
    with pytest.raises(EngineCheckError, match="did not pass its own validation"):
        serving.load(ModelSettings(path=int8_model, engine="litert-int8"))
    classifier, chosen = serving.load(ModelSettings(path=int8_model, engine="auto"))
    assert classifier.engine_name == "litert"  # the float form serves, under the sidecar's identity
    assert classifier.info == ModelInfo.read(int8_model)
    assert "int8 not served" in chosen.reason and "own validation" in chosen.reason


def test_a_validated_int8_form_serves_as_the_model_it_was_validated_as(int8_model):
    manifest = _edit_int8(int8_model, _passed)
    own = manifest["forms"][1]["own"]
    sidecar = ModelInfo.read(int8_model)
    for engine in ("auto", "litert-int8"):
        classifier, chosen = serving.load(ModelSettings(path=int8_model, engine=engine))
        assert classifier.engine_name == "litert-int8"
        assert chosen.engine.path == forms.form_path(int8_model, forms.LITERT_INT8)
        assert "validated as its own model" in chosen.reason
        info = classifier.info
        assert (info.version, info.device_uid, info.threshold) == (own["version"], own["device_uid"], own["threshold"])
        assert info.calibration == own["calibration"] and info.metrics == {"val": own["val"]}
        assert info.backbone == sidecar.backbone and info.init == sidecar.init
    # its probabilities are its own calibration applied to the int8 form's raw outputs
    golden = forms.Golden.read(int8_model)
    raw = np.asarray(own["golden"], np.float32)
    np.testing.assert_allclose(classifier.predict(golden.tensors()), info.platt(raw), atol=1e-5)
    # "litert" still means the float form, under the sidecar's identity
    classifier, _ = serving.load(ModelSettings(path=int8_model, engine="litert"))
    assert classifier.engine_name == "litert" and classifier.info == sidecar


@pytest.mark.parametrize("damage, refusal", [
    ("golden", "differs from its recorded outputs"),
    ("file", "not the file its manifest checked"),
    ("weights", "made from another model"),
])
def test_an_int8_form_that_does_not_verify_is_refused_and_auto_serves_the_float_form(int8_model, damage, refusal):
    _edit_int8(int8_model, _passed)
    if damage == "golden":
        _edit_int8(int8_model, lambda e: e["own"]["golden"].__setitem__(0, e["own"]["golden"][0] + 0.05))
    elif damage == "file":
        path = forms.form_path(int8_model, forms.LITERT_INT8)
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        manifest = json.loads(forms.manifest_path(int8_model).read_text())
        manifest["digest"] = "0" * 64
        forms.manifest_path(int8_model).write_text(json.dumps(manifest))
    with pytest.raises(EngineCheckError, match=refusal):
        serving.load(ModelSettings(path=int8_model, engine="litert-int8"))
    if damage != "weights":  # (with the manifest of other weights, the float form is refused as well)
        classifier, chosen = serving.load(ModelSettings(path=int8_model, engine="auto"))
        assert classifier.engine_name == "litert"
        assert refusal in chosen.reason
