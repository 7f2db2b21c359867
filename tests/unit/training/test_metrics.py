import numpy as np
import pytest

from arcade_pacs.training.evaluate import GRID_ARRAY, SplitScores, metrics
from arcade_pacs.training.metrics import roc_auc, roc_curve, threshold_for_fpr


def test_auc_hand_checked():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_roc_curve_ends():
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert (fpr[0], tpr[0]) == (0, 0)
    assert (fpr[-1], tpr[-1]) == (1, 1)
    assert np.all(np.diff(thr) < 0)


def test_threshold_for_fpr_allows_the_target_fraction():
    negatives = np.linspace(0.1, 1.0, 10)
    t = threshold_for_fpr(negatives, 0.10)
    assert (negatives >= t).mean() == pytest.approx(0.10)
    assert (negatives >= threshold_for_fpr(negatives, 0.0)).mean() == 0.0


def test_protocol_metrics_on_a_hand_checked_case():
    # Image 0: one lesion at (60, 60) (window 0 positive); image 1: one lesion at (300, 300).
    boxes = [np.array([[40.0, 40.0, 80.0, 80.0]]), np.array([[290.0, 290.0, 310.0, 310.0]])]
    from arcade_pacs.training.data import window_labels

    labels = np.stack([window_labels(GRID_ARRAY, b) for b in boxes])
    scores = np.full((2, 9), 0.1)
    scores[0, 0] = 0.9  # image 0: lesion window found
    scores[0, 8] = 0.7  # image 0: a false positive on a negative window
    scores[1, 4] = 0.3  # image 1: lesion window (centre) below threshold
    m = metrics(SplitScores(scores, labels, boxes), threshold=0.5)
    assert m["image_sensitivity"] == pytest.approx(0.5)
    assert m["lesion_recall"] == pytest.approx(0.5)
    n_neg = int((labels == 0).sum())
    assert m["negative_window_fpr"] == pytest.approx(1 / n_neg)
    assert m["n_positive_windows"] == int((labels == 1).sum())
    assert m["n_images"] == 2
    assert m["n_lesions"] == 2


def test_failure_pictures_pick_the_worst_misses_and_false_alarms(arcade_dir, tmp_path):
    from PIL import Image

    from arcade_pacs.training.data import load_split, window_labels
    from arcade_pacs.training.failures import worst_false_alarms, worst_misses, write_failures

    split = load_split(arcade_dir, "val", limit=6)
    labels = np.stack([window_labels(GRID_ARRAY, b) for b in split.boxes])
    rng = np.random.default_rng(0)
    scores = SplitScores(rng.random(labels.shape), labels, split.boxes)
    misses, alarms = worst_misses(scores, 0.5), worst_false_alarms(scores, 0.5)
    assert misses
    assert all(m.score < 0.5 and scores.labels[m.index, m.window] == 1 for m in misses)
    assert [m.score for m in misses] == sorted(m.score for m in misses)
    assert alarms
    assert all(a.score >= 0.5 and scores.labels[a.index, a.window] == 0 for a in alarms)
    assert alarms[0].score == scores.window_scores[labels == 0].max()
    drawn = write_failures(split, scores, 0.5, tmp_path)
    for kind in ("false_negatives", "false_positives"):
        picture = Image.open(tmp_path / drawn[kind]["picture"])
        assert np.asarray(picture.convert("L")).std() > 10  # real images drawn, not an empty canvas
