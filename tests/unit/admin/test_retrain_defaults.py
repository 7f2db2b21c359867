"""The admin's retraining request states ``TrainConfig``'s defaults without importing training."""

from dataclasses import fields

from arcade_pacs.admin.schemas import RetrainRequest
from arcade_pacs.training.train import TrainConfig


def test_the_retrain_request_defaults_are_train_config_s():
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    request = RetrainRequest()
    for name in ("epochs", "steps_per_epoch", "batch_size", "seed", "low_res", "low_res_fraction", "learning_rate"):
        assert getattr(request, name) == defaults[name], name
