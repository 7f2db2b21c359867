"""The classifier network: EfficientNetB0 with a one-unit sigmoid head.

The network takes ``(N, 224, 224, 3)`` float32 tensors in [0, 1] (what
:mod:`arcade_pacs.pipeline.tensors` makes) and returns the probability that each window shows
a stenosis. Keras' EfficientNet expects pixel values in [0, 255] and normalises them itself, so
a ``Rescaling(255)`` layer at the front keeps the [0, 1] convention of the pipeline.
"""

from __future__ import annotations

from pathlib import Path

from arcade_pacs.pipeline.tensors import MODEL_INPUT


def build_classifier(
    input_size: int | None = MODEL_INPUT,
    imagenet_weights: Path | None = None,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
):
    """Build an uncompiled EfficientNetB0 classifier.

    Parameters
    ----------
    input_size
        Side of the square input; ``None`` builds a size-agnostic network (used in training
        with progressive resizing; the shipped model is always rebuilt at 224).
    imagenet_weights
        Optional local file of Keras ImageNet weights for EfficientNetB0 without top
        (``efficientnetb0_notop.h5``); nothing is ever downloaded.
    bn_momentum
        Momentum of every batch-normalisation layer's moving statistics. Keras' default 0.99
        lags far behind the weights in a short from-scratch run, so inference-mode scores
        (what the product uses) lag behind training-mode ones; 0.9 tracks them closely.
    """
    import keras

    shape = (input_size, input_size, 3)
    if imagenet_weights is not None and not Path(imagenet_weights).is_file():
        raise FileNotFoundError(f"ImageNet weights file not found: {imagenet_weights}")
    inputs = keras.Input(shape=shape, name="window")
    x = keras.layers.Rescaling(255.0, name="to_0_255")(inputs)
    base = keras.applications.EfficientNetB0(
        include_top=False,
        weights=str(imagenet_weights) if imagenet_weights else None,
        input_shape=shape,
        pooling="avg",
    )
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    x = base(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="stenosis", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="arcade_effb0")
