import json

import numpy as np
import pytest

from arcade_pacs.model.classifier import Classifier
from arcade_pacs.pipeline.tensors import GRID, frame_tensors, window_transforms
from arcade_pacs.training.data import DatasetError, load_split, window_labels
from arcade_pacs.training.train import OneCycle, TrainConfig, WindowSampler, train, training_windows


def test_training_cuts_the_same_windows_as_inference(arcade_dir):
    """Un-augmented training windows of an image equal what the serving pipeline feeds the model."""
    split = load_split(arcade_dir, "val", limit=2)
    images = split.images[..., None]  # uint8, as training holds them
    cut = training_windows(images, np.ones(len(GRID), np.int32), window_transforms(GRID), 224).numpy()
    served = frame_tensors(split.images[1].astype(np.float32) / 255.0)
    assert cut.shape == served.shape == (9, 224, 224, 3)
    np.testing.assert_allclose(cut, served, atol=1e-6)
    assert np.ptp(served) > 0.3  # a real angiogram, not a blank that would match anything


def test_sampler_is_balanced_correctly_labelled_and_seeded(arcade_dir):
    split = load_split(arcade_dir, "val", limit=10)
    cfg = TrainConfig(data_dir=arcade_dir)
    sampler = WindowSampler(split, cfg)
    a = sampler.batch(np.random.default_rng(3), 16, 224)
    b = sampler.batch(np.random.default_rng(3), 16, 224)
    np.testing.assert_array_equal(a["transforms"], b["transforms"])  # deterministic given the seed
    assert a["labels"].sum() == 8
    # Recover each window from its transform: centre and size, then check its label.
    t = a["transforms"]
    size = np.hypot(t[:, 0], t[:, 3]) * 224
    cx = t[:, 0] * 111.5 + t[:, 1] * 111.5 + t[:, 2]
    cy = t[:, 3] * 111.5 + t[:, 4] * 111.5 + t[:, 5]
    for i in range(16):
        win = np.array([[cx[i] - (size[i] - 1) / 2, cy[i] - (size[i] - 1) / 2, size[i]]])
        assert window_labels(win, split.boxes[a["images"][i]])[0] == a["labels"][i]
        assert cfg.window_min - 1 <= size[i] <= cfg.window_max + 1


def test_one_cycle_schedule():
    s = OneCycle(1e-3, 100, 0.1)
    assert s(0) < s(9) == pytest.approx(1e-3)
    assert s(99) == pytest.approx(1e-5, rel=0.05)


@pytest.mark.slow
def test_short_training_run_writes_a_loadable_candidate(arcade_dir, tmp_path):
    out = tmp_path / "cand" / "m.keras"
    lines = []
    cfg = TrainConfig(data_dir=arcade_dir, out=out, epochs=2, steps_per_epoch=2, batch_size=4,
                      limit_train=8, limit_val=3, low_res=96, low_res_fraction=0.5, seed=1)
    info = train(cfg, progress=lambda p: lines.append(p.line()))
    assert out.is_file()
    assert out.with_suffix(".json").is_file()
    assert out.with_name("m_training.png").is_file()
    assert any("epoch 2/2" in line and "val_auc" in line for line in lines)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["version"] == info.version
    assert meta["device_uid"].startswith("1.2.826.0.1.3680043.8.498.")
    assert 0.0 <= meta["threshold"] <= 1.0
    assert [h["size"] for h in meta["training"]["history"]] == [96, 224]
    # The data side is timed every epoch and is a fraction of the step it feeds.
    assert all(0 < h["sample_ms"] < h["step_ms"] for h in meta["training"]["history"])
    assert any("ms/step" in line for line in lines)
    # Calibrated on val: the map is stored, increasing, and judged by its ECE before and after.
    assert meta["calibration"]["method"] == "platt"
    assert meta["calibration"]["a"] > 0
    assert {"ece_raw", "ece_calibrated"} <= meta["metrics"]["val"].keys()
    clf = Classifier.load(out)
    assert clf.model.input_shape == (None, 224, 224, 3)
    assert clf.predict(np.zeros((2, 224, 224, 3), np.float32)).shape == (2,)
    assert clf.calibration.a == meta["calibration"]["a"]


@pytest.mark.slow
def test_an_ensemble_trains_each_member_and_calibrates_their_average(arcade_dir, tmp_path):
    out = tmp_path / "ens" / "m.keras"
    cfg = TrainConfig(data_dir=arcade_dir, out=out, epochs=1, steps_per_epoch=2, batch_size=4,
                      limit_train=6, limit_val=2, low_res_fraction=0.0, seed=3, members=2)
    info = train(cfg)
    assert info.members == ["m_m1.keras"]
    assert out.with_name("m_m1.keras").is_file()
    assert len(info.training["member_weights_sha256"]) == 1
    assert info.training["member_weights_sha256"][0] != info.training["weights_sha256"]  # seed 4 vs 3
    assert len(Classifier.load(out).engines) == 2


def test_training_on_a_missing_dataset_fails_clearly_and_writes_nothing(tmp_path):
    out = tmp_path / "m.keras"
    with pytest.raises(DatasetError, match="missing images folder"):
        train(TrainConfig(data_dir=tmp_path / "nowhere", out=out))
    assert not out.exists()


@pytest.mark.slow
def test_training_is_deterministic_given_the_seed(arcade_dir, tmp_path):
    shas = []
    for run in ("a", "b"):
        cfg = TrainConfig(data_dir=arcade_dir, out=tmp_path / run / "m.keras", epochs=1, steps_per_epoch=2,
                          batch_size=4, limit_train=6, limit_val=1, low_res=64, low_res_fraction=1.0, seed=7)
        shas.append(train(cfg).training["weights_sha256"])
    assert shas[0] == shas[1]
