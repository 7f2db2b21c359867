import numpy as np

from arcade_pacs.pipeline.tensors import frame_tensors
from arcade_pacs.training.views import VIEWS, Option, ViewBank, option_scores, view_tensors


def test_the_original_view_is_what_serving_scores_and_hflip_its_mirror(rng):
    image = rng.random((512, 512)).astype(np.float32)
    original = view_tensors(image, VIEWS["original"])
    np.testing.assert_allclose(original, frame_tensors(image), atol=1e-6)
    np.testing.assert_allclose(view_tensors(image, VIEWS["hflip"]), original[:, :, ::-1, :], atol=1e-4)
    np.testing.assert_allclose(view_tensors(image, VIEWS["vflip"]), original[:, ::-1, :, :], atol=1e-4)


def test_a_larger_window_keeps_its_centre(rng):
    image = np.zeros((512, 512), np.float32)
    image[250:262, 250:262] = 1.0  # a bright dot at the frame centre, inside the centre window
    centre_window = 4
    for name in ("original", "scale1.25", "scale0.8"):
        t = view_tensors(image, VIEWS[name])[centre_window, ..., 0]
        ys, xs = np.nonzero(t > 0.5)
        assert abs(ys.mean() - 111.5) < 3, name
        assert abs(xs.mean() - 111.5) < 3, name
    big = (view_tensors(image, VIEWS["scale1.25"])[centre_window, ..., 0] > 0.5).sum()
    small = (view_tensors(image, VIEWS["scale0.8"])[centre_window, ..., 0] > 0.5).sum()
    assert big < small  # more context, so the dot covers fewer pixels


def test_options_average_views_then_members(tmp_path):
    labels = np.array([[1, 0, -1]], np.int8)
    a = ViewBank("a", "val", {"original": np.array([[0.2, 0.4, 0.6]]), "hflip": np.array([[0.4, 0.0, 0.6]])}, labels, [np.zeros((0, 4))])
    b = ViewBank("b", "val", {"original": np.array([[1.0, 1.0, 1.0]]), "hflip": np.array([[1.0, 1.0, 1.0]])}, labels, [np.zeros((0, 4))])
    option = Option(("a", "b"), ("original", "hflip"))
    np.testing.assert_allclose(option_scores({"a": a, "b": b}, option), [[0.65, 0.6, 0.8]])
    assert option.passes_per_window == 4
    a.save(tmp_path / "a.npz")
    again = ViewBank.load(tmp_path / "a.npz")
    assert again.member == "a"
    assert set(again.scores) == {"original", "hflip"}
    np.testing.assert_array_equal(again.labels, labels)


def test_the_rule_picks_the_best_auc_within_the_budget_that_keeps_the_flip():
    from arcade_pacs.training.options import choose

    rows = [
        {"option": "a+b × original+hflip", "passes_per_window": 4, "views": ["original", "hflip"], "window_auc": 0.85},
        {"option": "a+b × original", "passes_per_window": 2, "views": ["original"], "window_auc": 0.84},
        {"option": "a × original+hflip", "passes_per_window": 2, "views": ["original", "hflip"], "window_auc": 0.82},
        {"option": "b × original+hflip", "passes_per_window": 2, "views": ["original", "hflip"], "window_auc": 0.83},
    ]
    assert choose(rows, max_passes=2)["option"] == "b × original+hflip"
    assert choose(rows, max_passes=4)["option"] == "a+b × original+hflip"
