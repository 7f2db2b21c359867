import numpy as np

from arcade_pacs.pipeline.tta import tta_scores


def test_tta_scores_original_and_mirror_as_views_of_the_same_tensors(rng):
    x = rng.random((3, 8, 8, 3)).astype(np.float32)
    calls = []

    def predict(batch):
        calls.append(np.shares_memory(batch, x))  # the mirror is a view: the windows are held once
        return batch[:, :, 0, 0].mean(axis=1)  # depends on the leftmost column: not flip-invariant

    s = tta_scores(predict, x)
    assert calls == [True, True]
    np.testing.assert_allclose(s.original, x[:, :, 0, 0].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.flipped, x[:, :, -1, 0].mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s.mean, (s.original + s.flipped) / 2)
    np.testing.assert_allclose(s.disagreement, np.abs(s.original - s.flipped))


def test_tta_scores_empty():
    s = tta_scores(lambda b: b, np.zeros((0, 8, 8, 3)))
    assert s.mean.shape == (0,)
