"""Window resampling inside TensorFlow graphs (training's ``tf.data`` pipeline only).

The op the model was trained with: ``ImageProjectiveTransformV3``, bilinear, reflecting at the
frame's edges. Serving computes the same windows in numpy
(:func:`arcade_pacs.pipeline.tensors.sample_windows`); ``tests/unit/pipeline/test_resample.py``
measures the two against each other on real frames.
"""

from __future__ import annotations

from arcade_pacs.pipeline.tensors import MODEL_INPUT


def sample_windows_tf(frames, transforms, out_size: int = MODEL_INPUT):
    """Resample windows of frames into ``(N, out_size, out_size, 3)`` float32 tensors in [0, 1].

    ``frames`` is ``(N, H, W)`` or ``(N, H, W, 1)`` (float in [0, 1] or uint8 scaled by 1/255),
    one frame per transform (TensorFlow's 8-parameter projective form). Works on graph tensors.
    """
    import tensorflow as tf

    frames = tf.convert_to_tensor(frames)
    if frames.dtype == tf.uint8:
        frames = tf.cast(frames, tf.float32) / 255.0
    frames = tf.cast(frames, tf.float32)
    if frames.shape.rank == 3:
        frames = frames[..., tf.newaxis]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=frames,
        transforms=tf.convert_to_tensor(transforms, tf.float32),
        output_shape=tf.constant([out_size, out_size], tf.int32),
        fill_value=tf.constant(0.0),
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    return tf.image.grayscale_to_rgb(tf.clip_by_value(out, 0.0, 1.0))
