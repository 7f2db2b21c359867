from arcade_pacs.training.card import evaluation_path, render, verdict
from tests.project import SHIPPED_MODEL


def test_the_model_card_is_rendered_from_the_shipped_models_measurements():
    card = SHIPPED_MODEL.parent / "MODEL_CARD.md"
    assert evaluation_path(SHIPPED_MODEL).is_file(), "run: arcade-pacs evaluate --split test --out ..."
    assert card.read_text() == render(SHIPPED_MODEL), "models/MODEL_CARD.md is stale: run `arcade-pacs card`"


def test_verdict_states_missed_targets():
    good = {"window_auc": 0.93, "image_sensitivity": 0.95, "negative_window_fpr": 0.1}
    assert verdict(good).startswith("All targets are met")
    text = verdict(good | {"window_auc": 0.85})
    assert "Not all targets are met" in text
    assert "`window_auc` 0.8500" in text
