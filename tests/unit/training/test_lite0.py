"""EfficientNet-Lite0's ImageNet weights, read without torch, give the checkpoint's outputs.

The probabilities (not only the classes) are checked on two photographs scikit-image ships:
a wrong epsilon, padding or input normalisation still gets the class right but moves the
probabilities by 0.12 to 0.27; a reader that ignores strides gets one class for every photo.
"""

from __future__ import annotations

import numpy as np
import pytest

from arcade_pacs.training import lite0
from arcade_pacs.training.torch_pickle import CheckpointError, load_state_dict


@pytest.fixture(scope="module")
def state_dict():
    return load_state_dict(lite0.checkpoint_path())


@pytest.fixture(scope="module")
def imagenet_model(state_dict):
    model = lite0.build_lite0(224, classes=1000)
    lite0.imagenet_weights(model, state_dict)
    return model


def photo(image: np.ndarray) -> np.ndarray:
    """Centre crop 224/256 of the image resized (bicubic) to 256, as [0, 1] RGB."""
    from skimage import transform

    h, w = image.shape[:2]
    side = min(h, w)
    square = image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
    resized = transform.resize(square, (256, 256), order=3, preserve_range=True, anti_aliasing=False)
    return np.clip(resized[16:240, 16:240] / 255.0, 0, 1).astype(np.float32)


def test_checkpoint_reads_without_torch(state_dict):
    assert len(state_dict) == 296
    params = sum(v.size for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024
    assert not any("_se_" in k for k in state_dict)
    kernels = [state_dict[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(16)]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    assert kernels == [k for k, *_ in lite0.blocks()]


def write_legacy_checkpoint(path, tensors: dict[str, tuple[np.ndarray, int, tuple, tuple]]) -> None:
    """A legacy torch checkpoint holding ``name -> (storage, offset, size, stride)``, written the
    way torch < 1.6 wrote one (stand-in ``torch`` names registered only while pickling)."""
    import pickle
    import struct
    import sys
    import types
    from collections import OrderedDict

    from arcade_pacs.training.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION

    fake = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    fake.FloatStorage, fake_utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2

    class Key(str):
        pass

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.args = (Key(key), offset, size, stride, False, OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Key):
                return ("storage", FloatStorage, str(obj), "cpu", storages[str(obj)].size)
            return None

    storages = {f"s{i}": np.ascontiguousarray(t[0], "<f4").ravel() for i, t in enumerate(tensors.values())}
    state = OrderedDict((name, Tensor(f"s{i}", *t[1:])) for i, (name, t) in enumerate(tensors.items()))
    sys.modules["torch"], sys.modules["torch._utils"] = fake, fake_utils
    try:
        with open(path, "wb") as f:
            for item in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
                pickle.dump(item, f, protocol=2)
            Writer(f, protocol=2).dump(state)
            pickle.dump(list(storages), f, protocol=2)
            for data in storages.values():
                f.write(struct.pack("<q", data.size) + data.tobytes())
    finally:
        del sys.modules["torch"], sys.modules["torch._utils"]


def test_reader_honours_strides_and_offsets(tmp_path):
    """A (O, I, H, W) kernel stored as a non-contiguous view of an HWIO buffer (how this wheel's
    convolutions are stored), and a view starting at an offset, come back element for element."""
    kernel = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)  # OIHW
    hwio = np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))  # what the storage holds
    strides = tuple(s // 4 for s in hwio.transpose(3, 2, 0, 1).strides)
    base = np.arange(10, dtype=np.float32)
    path = tmp_path / "views.pth"
    write_legacy_checkpoint(path, {"conv.weight": (hwio, 0, kernel.shape, strides),
                                   "bias": (base, 3, (4,), (1,)), "every_other": (base, 1, (3,), (2,))})
    sd = load_state_dict(path)
    np.testing.assert_array_equal(sd["conv.weight"], kernel)
    np.testing.assert_array_equal(sd["bias"], [3, 4, 5, 6])
    np.testing.assert_array_equal(sd["every_other"], [1, 3, 5])
    assert sd["conv.weight"].flags["C_CONTIGUOUS"]


def test_view_past_its_storage_refused(tmp_path):
    path = tmp_path / "bad.pth"
    write_legacy_checkpoint(path, {"w": (np.zeros(4, np.float32), 2, (4,), (1,))})
    with pytest.raises(CheckpointError, match="past its storage"):
        load_state_dict(path)


@pytest.mark.parametrize(
    ("name", "classes", "expected"),
    [("coffee", [967], 0.95), ("chelsea", [281, 282, 283, 284, 285], 0.93)],
)
def test_imagenet_probabilities(imagenet_model, name, classes, expected):
    from skimage import data

    probabilities = imagenet_model.predict(photo(getattr(data, name)())[None], verbose=0)[0]
    assert int(np.argmax(probabilities)) in classes
    assert abs(float(probabilities[classes].sum()) - expected) <= 0.02


def test_chelsea_breakdown(imagenet_model):
    """Tiger cat 0.41, Egyptian cat 0.34, tabby 0.17 (within 0.02)."""
    from skimage import data

    p = imagenet_model.predict(photo(data.chelsea())[None], verbose=0)[0]
    assert abs(p[282] - 0.41) <= 0.02
    assert abs(p[285] - 0.34) <= 0.02
    assert abs(p[281] - 0.17) <= 0.02


def test_zip_and_foreign_files_refused(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(CheckpointError, match="zip"):
        load_state_dict(zipped)
    other = tmp_path / "other.pth"
    import pickle

    other.write_bytes(pickle.dumps(12345))
    with pytest.raises(CheckpointError, match="magic"):
        load_state_dict(other)


def test_pickled_code_refused(tmp_path, state_dict):
    """A checkpoint that names anything beyond tensors and storages is refused, not executed."""
    import pickle

    from arcade_pacs.training.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for item in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
            pickle.dump(item, f, protocol=2)
        f.write(b"\x80\x02cos\nsystem\nq\x00.")
    with pytest.raises(CheckpointError, match="refusing"):
        load_state_dict(path)


def test_classifier_backbones_build():
    from arcade_pacs.training.network import build_classifier

    model = build_classifier(224, "lite0", "imagenet")
    assert model.get_layer("backbone").count_params() == 4_694_024 - 1_281_000
    assert model.output_shape == (None, 1)
    with pytest.raises(ValueError, match="backbone"):
        build_classifier(224, "resnet")
