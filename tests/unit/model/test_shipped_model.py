"""The shipped model itself: a trained, ImageNet-initialised EfficientNet-Lite0, stable across
encodings and pixel formats."""

import json

import numpy as np
import pydicom
import pytest

from arcade_pacs.pipeline.analyse import analyse_frames
from arcade_pacs.pipeline.frames import decode_frames
from tests.factory import real_frame, xa_dataset
from tests.project import SHIPPED_MODEL


def test_shipped_model_is_a_trained_pretrained_lite0_with_a_card(shipped_classifier):
    model = shipped_classifier.model
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1)
    meta = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())
    assert (meta["backbone"], meta["init"]) == ("lite0", "imagenet")
    assert model.name == "arcade_lite0"
    assert model.get_layer("backbone").get_layer("stem_conv") is not None
    assert meta["training"]["history"], "trained: the sidecar holds its training history"
    assert meta["metrics"]["val"]["window_auc"] > 0.6  # far from an untrained network's 0.5
    assert (SHIPPED_MODEL.parent / "MODEL_CARD.md").is_file()


def _score(classifier, frames):
    return analyse_frames(frames, classifier.predict, classifier.info.threshold, keyframes=8).finding


def test_wg04_encodings_give_identical_scores(shipped_classifier, dicom_dir):
    scores = [
        _score(shipped_classifier, decode_frames(dicom_dir / f"xa1_wg04_{name}.dcm")).probability
        for name in ("jpeglossless_sv1", "rle", "uncompressed_reference")
    ]
    assert scores[0] == scores[1] == scores[2]


def test_monochrome1_scores_as_monochrome2(shipped_classifier, rubo):
    frame = real_frame(rubo, 55)
    mono2 = _score(shipped_classifier, decode_frames(xa_dataset(frame))).probability
    mono1 = _score(shipped_classifier, decode_frames(xa_dataset(255 - frame, photometric="MONOCHROME1"))).probability
    assert mono1 == pytest.approx(mono2, abs=1e-4)


def test_12_bit_and_8_bit_versions_score_alike(shipped_classifier, rubo):
    frame = real_frame(rubo, 55)
    eight = _score(shipped_classifier, decode_frames(xa_dataset(frame))).probability
    twelve = _score(shipped_classifier, decode_frames(xa_dataset(frame.astype(np.uint16) * 16 + 7, bits_stored=12))).probability
    assert twelve == pytest.approx(eight, abs=0.01)


def test_real_cine_keyframes_drive_the_result(shipped_classifier, rubo):
    f = _score(shipped_classifier, decode_frames(pydicom.dcmread(rubo)))
    assert min(f.frame_numbers) > 20
    assert 0.0 <= f.probability <= 1.0
    assert f.probability == pytest.approx((f.tta_original + f.tta_flipped) / 2, abs=1e-6)
