"""Weight averaging of late checkpoints (SWA, Izmailov et al. 2018): a better model for free.

Averaging the weights of the last epochs of one run lands nearer the centre of the flat
region the optimiser wanders in, which tends to generalise better than any single epoch, and
costs nothing at inference (one model, one pass). Batch-norm statistics of averaged weights
are not the average of the statistics, so they are re-estimated afterwards by forward passes
in training mode over training windows (the "bn update" of SWA), with no gradient step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arcade_pacs.pipeline.tensors import MODEL_INPUT
from arcade_pacs.training.data import Split
from arcade_pacs.training.train import TrainConfig, WindowSampler, training_windows


def average_weights(paths: list[Path]) -> list[np.ndarray]:
    """Element-wise mean of the weights of the models at ``paths`` (same architecture)."""
    import keras

    total = None
    for path in paths:
        weights = keras.models.load_model(path, compile=False).get_weights()
        total = [w.astype(np.float64) for w in weights] if total is None else [t + w for t, w in zip(total, weights, strict=True)]
    return [(t / len(paths)).astype(np.float32) for t in total]


def update_batch_norm(model, split: Split, cfg: TrainConfig, batches: int = 100, batch_size: int = 32, seed: int = 0) -> None:
    """Re-estimate every BatchNormalization layer's moving statistics on training windows."""
    import keras
    import tensorflow as tf

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    sampler = WindowSampler(split, cfg)
    images = tf.constant(split.images[..., None])
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        b = sampler.batch(rng, batch_size, MODEL_INPUT)
        x = training_windows(images, tf.constant(b["images"], tf.int32), tf.constant(b["transforms"]), MODEL_INPUT)
        model(x, training=True)  # updates the moving statistics; no optimiser step


def swa(paths: list[Path], out: Path, split: Split, cfg: TrainConfig, batches: int = 100) -> Path:
    """Average ``paths`` into one serving model at ``out`` (weights, then batch-norm update)."""
    from arcade_pacs.training.network import build_classifier

    model = build_classifier(MODEL_INPUT)
    model.set_weights(average_weights(paths))
    update_batch_norm(model, split, cfg, batches)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.keras")
    model.save(tmp)
    tmp.replace(out)
    return out
