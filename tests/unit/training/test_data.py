import json

import numpy as np
import pytest

from arcade_pacs.training.data import DatasetError, load_split, window_labels

W = np.array([[0.0, 0.0, 256.0]])


@pytest.mark.parametrize(
    "box, expected",
    [
        ((10, 10, 50, 50), 1),  # wholly inside
        ((200, 10, 300, 50), 1),  # centre inside (250), 56 % of the area inside
        ((220, 10, 300, 50), -1),  # centre outside (260) but touches: ignored
        ((240, 10, 290, 50), -1),  # centre outside, touches: ignored
        ((300, 300, 350, 350), 0),  # touches nothing: negative
    ],
)
def test_window_label_from_one_box(box, expected):
    assert window_labels(W, np.array([box], float))[0] == expected


def test_half_area_rule_for_boxes_across_the_edge():
    box = np.array([[100.0, 200.0, 120.0, 300.0]])  # centre y=250 inside, rows 200-256 = 56 of 100
    assert window_labels(W, box)[0] == 1
    box = np.array([[100.0, 150.0, 120.0, 355.0]])  # centre 252.5 inside, rows 150-256 = 106/205 > 0.5
    assert window_labels(W, box)[0] == 1
    box = np.array([[100.0, 130.0, 120.0, 380.0]])  # centre 255 inside, 126/250 = 0.504
    assert window_labels(W, box)[0] == 1
    box = np.array([[-100.0, 130.0, 120.0, 380.0]])  # centre x=10 inside, area 120*126/(220*250) = 0.27
    assert window_labels(W, box)[0] == -1


def test_any_positive_box_wins_and_no_boxes_is_negative():
    boxes = np.array([[10, 10, 50, 50], [240, 10, 290, 50]], float)
    assert window_labels(W, boxes)[0] == 1
    assert window_labels(W, np.zeros((0, 4)))[0] == 0


def test_load_real_val_split(arcade_dir):
    split = load_split(arcade_dir, "val", limit=5)
    assert split.images.shape == (5, 512, 512)
    assert split.images.dtype == np.uint8
    assert all(len(b) >= 1 for b in split.boxes)  # every val image holds a stenosis
    x0, y0, x1, y1 = split.boxes[0][0]
    assert 0 <= x0 < x1 <= 512
    assert 0 <= y0 < y1 <= 512


def test_missing_or_malformed_dataset_names_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="missing images folder"):
        load_split(tmp_path, "train")
    (tmp_path / "stenosis" / "train" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing annotation file"):
        load_split(tmp_path, "train")
    ann = tmp_path / "stenosis" / "train" / "annotations"
    ann.mkdir()
    (ann / "train.json").write_text("{not json")
    with pytest.raises(DatasetError, match="malformed COCO"):
        load_split(tmp_path, "train")
    (ann / "train.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="no annotated images"):
        load_split(tmp_path, "train")
