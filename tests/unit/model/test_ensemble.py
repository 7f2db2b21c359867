"""A served model may be several members averaged, then calibrated: both stored with the model."""

import shutil

import numpy as np
import pytest

from arcade_pacs.model.calibration import Platt
from arcade_pacs.model.classifier import Classifier, ModelInfo
from arcade_pacs.settings import ModelSettings


@pytest.fixture
def ensemble(tmp_path, tiny_model):
    """The tiny model plus a second member with other weights, calibrated, as one served model."""
    import keras

    path = tmp_path / "ensemble.keras"
    shutil.copyfile(tiny_model, path)
    other = keras.models.load_model(tiny_model, compile=False)
    other.set_weights([w * -0.7 + 0.01 for w in other.get_weights()])
    other.save(tmp_path / "ensemble_m1.keras")
    info = ModelInfo(name="tiny ensemble", version="ens-1", device_uid="1.2.3.4", threshold=0.4,
                     members=["ensemble_m1.keras"], calibration=Platt(1.6, -0.3).to_json())
    info.write(path)
    return path


def _windows(rng, n=10):
    return rng.random((n, 224, 224, 3)).astype(np.float32)


def test_the_ensemble_is_the_calibrated_mean_of_its_members(ensemble, tmp_path, rng):
    x = _windows(rng)
    served = Classifier.load(ensemble).predict(x)
    members = []
    for member in ModelInfo.read(ensemble).member_paths(ensemble):
        alone = tmp_path / f"alone_{member.stem}.keras"
        shutil.copyfile(member, alone)
        ModelInfo(name="alone", version=member.stem, threshold=0.5).write(alone)  # no members, no calibration
        members.append(Classifier.load(alone).predict(x))
    assert not np.allclose(members[0], members[1])  # two different members
    expected = Platt(1.6, -0.3)(np.mean(members, axis=0))
    np.testing.assert_allclose(served, expected, atol=1e-6)


def test_members_and_calibration_are_stored_and_loaded_with_the_model(ensemble):
    info = ModelInfo.read(ensemble)
    assert info.platt == Platt(1.6, -0.3)
    assert ([p.name for p in info.member_paths(ensemble)] == [
        "ensemble.keras", "ensemble_m1.keras"])
    clf = Classifier.load(ensemble)
    assert len(clf.engines) == 2
    assert clf.calibration == Platt(1.6, -0.3)


def test_the_ensemble_runs_through_the_checked_engine(ensemble, data_dir, rng):
    """Each member through its own shipped, checked LiteRT form gives the same served outputs."""
    from arcade_pacs.model.build import build_forms
    from arcade_pacs.model.serving import load
    from arcade_pacs.settings import val_images_dir

    settings = ModelSettings(path=ensemble, engine="litert", check_images=2)
    built = build_forms(ensemble, settings, val_images_dir(data_dir / "arcade"))
    assert [f.path.name for f in built] == [p.with_suffix(".tflite").name for p in ModelInfo.read(ensemble).member_paths(ensemble)]
    served, selection = load(settings)
    assert served.engine_name == "litert x2"
    assert len(served.engines) == 2
    x = _windows(rng, 6)
    np.testing.assert_allclose(served.predict(x), Classifier.load(ensemble).predict(x), atol=1e-4)
