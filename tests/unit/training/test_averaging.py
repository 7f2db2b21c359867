import numpy as np

from arcade_pacs.training.averaging import average_weights, update_batch_norm
from arcade_pacs.training.data import load_split
from arcade_pacs.training.train import TrainConfig


def _small_model(seed):
    import keras

    inputs = keras.Input((224, 224, 3))
    x = keras.layers.AveragePooling2D(pool_size=16)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.RandomNormal(seed=seed))(x)
    return keras.Model(inputs, outputs)


def test_average_of_two_checkpoints_is_their_mean(tmp_path):
    a, b = _small_model(1), _small_model(2)
    a.save(tmp_path / "a.keras")
    b.save(tmp_path / "b.keras")
    mean = average_weights([tmp_path / "a.keras", tmp_path / "b.keras"])
    for m, wa, wb in zip(mean, a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(m, (wa + wb) / 2, rtol=1e-6)


def test_batch_norm_statistics_are_re_estimated_on_training_windows(arcade_dir):
    model = _small_model(1)
    split = load_split(arcade_dir, "val", limit=4)
    update_batch_norm(model, split, TrainConfig(data_dir=arcade_dir), batches=40, batch_size=8)
    bn = next(layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization")
    mean = np.asarray(bn.moving_mean)
    # Windows of angiograms average to mid-grey: the statistics moved from 0 towards that.
    assert np.all(mean > 0.2)
    assert np.all(mean < 0.9)
    assert np.all(np.asarray(bn.moving_variance) < 0.5)
