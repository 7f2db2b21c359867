"""Training: an EfficientNet classifier on windows of ARCADE train images.

By default EfficientNet-Lite0 initialised from ImageNet and fine-tuned whole (``backbone``,
``init``; :mod:`arcade_pacs.training.network`): on 940 images the pretrained start is worth
more than any other lever tried (the model card's table); EfficientNetB0 from scratch stays a
choice.

Why it is built this way
------------------------
- Labels come from regions (:func:`arcade_pacs.training.data.window_labels`): ARCADE has no
  negative images, but plenty of windows that touch no stenosis.
- Each batch holds as many positive as negative windows, of random size (about the product's
  256 px), position, small rotation and flips, cut by TensorFlow's projective transform
  (:func:`arcade_pacs.training.resample.sample_windows_tf`; serving computes it in numpy), then photometric augmentation
  (contrast, brightness, gamma, noise). Sampling is vectorised numpy; cutting and augmentation
  run as TensorFlow ops inside the compiled training step, so data never waits on Python.
- On a 2-core CPU a 224 px step is slow; the first ``low_res_fraction`` of the epochs train at
  ``low_res`` px (progressive resizing), the rest at 224 px so the batch-norm statistics and
  filters settle at the serving resolution. EfficientNet's convolutions and global pooling do
  not depend on the input size, so the weights carry over unchanged.
- AdamW with a one-cycle schedule (linear warm-up, cosine decay); the checkpoint with the best
  validation window AUC is kept; the threshold is chosen on ``val`` with TTA scores.
- Deterministic given ``seed`` (seeded numpy sampling, Keras seeds, TensorFlow op determinism).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from arcade_pacs.core import figures
from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.keras_engine import configure_tensorflow
from arcade_pacs.pipeline.keyframes import vessel_map
from arcade_pacs.pipeline.tensors import FRAME_SIZE, MODEL_INPUT, window_transforms
from arcade_pacs.training.data import DatasetError, Split, load_split, window_labels
from arcade_pacs.training.evaluate import score_split, window_auc
from arcade_pacs.training.network import model_name
from arcade_pacs.training.resample import sample_windows_tf


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in the model's sidecar."""

    data_dir: Path
    out: Path = Path("models/arcade_stenosis.keras")
    workdir: Path | None = None
    epochs: int = 6
    steps_per_epoch: int = 200
    batch_size: int = 32
    low_res: int = 160
    low_res_fraction: float = 0.5
    learning_rate: float = 6e-4
    weight_decay: float = 0.02
    warmup_fraction: float = 0.05
    window_min: int = 192
    window_max: int = 320
    scale_windows: bool = True
    hard_negative_fraction: float = 0.5
    max_rotation_deg: float = 12.0
    target_fpr: float = 0.10
    low_res_val_every: int = 1
    checkpoint_any_resolution: bool = True
    seed: int = 0
    # The network: backbone "effb0" | "lite0", initialised "scratch" | "imagenet" (training/network.py).
    backbone: str = "lite0"
    init: str = "imagenet"
    imagenet_weights: Path | None = None  # effb0 + imagenet only: a local Keras no-top weights file
    # Fine-tuning a pretrained backbone: the first `freeze_epochs` epochs train the head alone
    # (backbone frozen, its batch norm in inference mode) at `head_learning_rate`; the rest train
    # the whole network on their own one-cycle schedule peaking at `learning_rate`.
    freeze_epochs: int = 0
    head_learning_rate: float = 3e-3
    # Keep the backbone's batch-norm statistics (ImageNet's, or the from-scratch ones) fixed
    # while the rest trains: what small-batch fine-tuning usually needs.
    freeze_bn: bool = False
    drop_connect: float = 0.0
    limit_train: int | None = None
    limit_val: int | None = None
    resume: bool = False
    # Keep each epoch's serving weights (workdir/epochNN.keras): what weight averaging (SWA,
    # training/averaging.py) averages.
    keep_epochs: bool = False
    # Ensemble size: members 2.. are trained with seeds seed+1.. into <out>_m1.keras, ...; the
    # model averages them pass by pass (one calibration for the average).
    members: int = 1

    def member_out(self, index: int) -> Path:
        """Where member ``index`` (1-based beyond the main file) is written, beside ``out``."""
        out = Path(self.out)
        return out.with_name(f"{out.stem}_m{index}{out.suffix}")

    def phase_steps(self, epoch: int) -> tuple[int, int, float]:
        """``(first step, steps, peak learning rate)`` of the phase (head or whole) holding ``epoch``."""
        head = min(self.freeze_epochs, self.epochs)
        if epoch < head:
            return 0, head * self.steps_per_epoch, self.head_learning_rate
        return head * self.steps_per_epoch, (self.epochs - head) * self.steps_per_epoch, self.learning_rate

    def epoch_size(self, epoch: int) -> int:
        """Input resolution of ``epoch`` (0-based)."""
        return self.low_res if epoch < int(round(self.low_res_fraction * self.epochs)) else MODEL_INPUT


@dataclass
class Progress:
    """A snapshot of training progress, handed to the progress callback."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    elapsed_s: float
    eta_s: float
    val_auc: float | None = None
    history: list[dict] = field(default_factory=list)

    def line(self) -> str:
        val = f" val_auc {self.val_auc:.4f}" if self.val_auc is not None else ""
        last = self.history[-1] if self.history and self.history[-1]["epoch"] == self.epoch else {}
        data = f" data {last['sample_ms']:.0f} of {last['step_ms']:.0f} ms/step" if "sample_ms" in last else ""
        return (
            f"epoch {self.epoch}/{self.epochs} step {self.step}/{self.steps} "
            f"loss {self.loss:.4f}{val}{data} elapsed {self.elapsed_s / 60:.1f} min "
            f"left ~{self.eta_s / 60:.1f} min"
        )


class WindowSampler:
    """Draws balanced, augmented window parameters for a batch (pure numpy, seeded)."""

    CELL = 16  # pixels of the 512 frame per cell of the vessel map

    def __init__(self, split: Split, cfg: TrainConfig):
        self.split = split
        self.cfg = cfg
        self.with_boxes = [i for i, b in enumerate(split.boxes) if len(b)]
        if not self.with_boxes:
            raise DatasetError(f"split {split.name!r} holds no stenosis annotation")
        # Summed-area tables of each image's vessel map: vessel content of any window in O(1),
        # to draw hard negatives (vessel-rich windows without a stenosis), not just background.
        maps = np.stack([vessel_map(img.astype(np.float32) / 255.0, self.CELL) for img in split.images])
        self.vessel_sat = np.pad(maps.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))

    def _sizes(self, rng: np.random.Generator, n: int, out_size: int = MODEL_INPUT) -> np.ndarray:
        """Window sides; with ``scale_windows`` they shrink with the input size, so a low-resolution
        epoch sees less context at the serving pixel scale instead of a smaller picture."""
        scale = out_size / MODEL_INPUT if self.cfg.scale_windows else 1.0
        lo, hi = math.log(self.cfg.window_min * scale), math.log(self.cfg.window_max * scale)
        return np.exp(rng.uniform(lo, hi, n))

    def _vessel_content(self, images: np.ndarray, windows: np.ndarray) -> np.ndarray:
        c = self.CELL
        x0 = np.clip(np.round(windows[:, 0] / c).astype(int), 0, 512 // c)
        y0 = np.clip(np.round(windows[:, 1] / c).astype(int), 0, 512 // c)
        x1 = np.clip(np.round((windows[:, 0] + windows[:, 2]) / c).astype(int), 0, 512 // c)
        y1 = np.clip(np.round((windows[:, 1] + windows[:, 2]) / c).astype(int), 0, 512 // c)
        sat = self.vessel_sat[images]
        rows = np.arange(len(images))
        total = sat[rows, y1, x1] - sat[rows, y0, x1] - sat[rows, y1, x0] + sat[rows, y0, x0]
        return total / np.maximum((x1 - x0) * (y1 - y0), 1)

    def _positives(self, rng: np.random.Generator, n: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        images, windows = [], []
        while len(images) < n:
            m = 4 * (n - len(images))
            idx = rng.choice(self.with_boxes, m)
            sizes = self._sizes(rng, m, out_size)
            for i, s in zip(idx, sizes, strict=True):
                boxes = self.split.boxes[i]
                x0, y0, x1, y1 = boxes[rng.integers(len(boxes))]
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                wx = np.clip(rng.uniform(cx - s + 1, cx), 0, FRAME_SIZE - s)
                wy = np.clip(rng.uniform(cy - s + 1, cy), 0, FRAME_SIZE - s)
                win = np.array([[wx, wy, s]])
                if window_labels(win, boxes)[0] == 1:
                    images.append(i)
                    windows.append(win[0])
                    if len(images) == n:
                        break
        return np.array(images), np.array(windows)

    def _negatives(self, rng: np.random.Generator, n: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` windows touching no stenosis: a share drawn uniformly, the rest (the hard ones)
        from the candidates in the top quarter of vessel content."""
        images, windows = np.zeros(0, int), np.zeros((0, 3))
        while len(images) < 8 * n:
            m = 16 * n
            idx = rng.integers(len(self.split), size=m)
            sizes = self._sizes(rng, m, out_size)
            cand = np.stack([rng.uniform(0, 1, m) * (FRAME_SIZE - sizes), rng.uniform(0, 1, m) * (FRAME_SIZE - sizes), sizes], 1)
            ok = np.array([window_labels(cand[j : j + 1], self.split.boxes[i])[0] == 0 for j, i in enumerate(idx)])
            images, windows = np.concatenate([images, idx[ok]]), np.concatenate([windows, cand[ok]])
        n_hard = int(round(self.cfg.hard_negative_fraction * n))
        content = self._vessel_content(images, windows)
        rich = np.flatnonzero(content >= np.quantile(content, 0.75))
        hard = rng.choice(rich, n_hard, replace=False)
        rest = np.setdiff1d(np.arange(len(images)), hard)
        easy = rng.choice(rest, n - n_hard, replace=False)
        pick = np.concatenate([hard, easy])
        return images[pick], windows[pick]

    def batch(self, rng: np.random.Generator, size: int, out_size: int) -> dict:
        """Parameters of one batch: image indices, transforms, photometric draws and labels."""
        n_pos = size // 2
        pi, pw = self._positives(rng, n_pos, out_size)
        ni, nw = self._negatives(rng, size - n_pos, out_size)
        images = np.concatenate([pi, ni])
        windows = np.concatenate([pw, nw])
        labels = np.concatenate([np.ones(len(pi)), np.zeros(len(ni))]).astype(np.float32)
        angles = np.deg2rad(rng.uniform(-1, 1, size) * self.cfg.max_rotation_deg)
        transforms = window_transforms(
            windows,
            out_size=out_size,
            angles=angles,
            hflips=rng.random(size) < 0.5,
            vflips=rng.random(size) < 0.5,
        )
        return {
            "images": images,
            "transforms": transforms,
            "contrast": rng.uniform(0.75, 1.3, size).astype(np.float32),
            "brightness": rng.uniform(-0.08, 0.08, size).astype(np.float32),
            "gamma": np.exp(rng.uniform(math.log(0.7), math.log(1.45), size)).astype(np.float32),
            "noise": rng.uniform(0.0, 0.03, size).astype(np.float32),
            "noise_seed": rng.integers(0, 2**31 - 1, 2),
            "labels": labels,
        }


def training_windows(images, idx, transforms, out_size: int):
    """The windows of one training batch: images ``idx`` of ``images`` (uint8 ``(N, 512, 512, 1)``)
    cut by ``transforms``, through :func:`~arcade_pacs.training.resample.sample_windows_tf` (inference
    computes the same windows in numpy)."""
    import tensorflow as tf

    return sample_windows_tf(tf.gather(images, idx), transforms, out_size)


def photometric(x, contrast, brightness, gamma, noise, noise_seed):
    """Per-sample contrast, brightness, gamma and Gaussian noise on [0, 1] tensors (training only)."""
    import tensorflow as tf

    c = contrast[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * c + mean + brightness[:, None, None, None]
    x = tf.clip_by_value(x, 0.0, 1.0) ** gamma[:, None, None, None]
    grey = x[..., :1] + tf.random.stateless_normal(tf.shape(x[..., :1]), noise_seed) * noise[:, None, None, None]
    return tf.image.grayscale_to_rgb(tf.clip_by_value(grey, 0.0, 1.0))


class OneCycle:
    """Linear warm-up then cosine decay to 1% of the peak, over ``total`` steps."""

    def __init__(self, peak: float, total: int, warmup_fraction: float):
        self.peak, self.total = peak, max(1, total)
        self.warmup = max(1, int(warmup_fraction * total))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def weights_sha256(model) -> str:
    """SHA-256 of the weights themselves (a ``.keras`` file also holds the date it was saved)."""
    h = hashlib.sha256()
    for array in model.get_weights():
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def model_identity(weights: list[str], calibration: dict, seed: int, when: datetime,
                   backbone: str = "effb0") -> tuple[str, str]:
    """Version and Device UID of a model: derived from its members' weights and its calibration,
    so the same served outputs always carry the same identity, and any change gives a new one."""
    digest = hashlib.sha256(json.dumps([weights, calibration], sort_keys=True).encode()).hexdigest()
    return f"{backbone}-{when:%Y%m%d.%H%M}-s{seed}-{digest[:8]}", device_uid_for(digest)


def device_uid_for(weights_sha256: str) -> str:
    """A Device UID derived from the weights, so the same weights always carry the same UID."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["arcade-pacs-model", weights_sha256])


def _save_serving_model(train_model, path: Path, cfg: TrainConfig) -> None:
    """Rebuild at 224x224 (the declared serving input), copy the weights, save atomically."""
    from arcade_pacs.training.network import build_classifier

    serving = build_classifier(MODEL_INPUT, cfg.backbone)
    serving.set_weights(train_model.get_weights())
    tmp = path.with_name(path.stem + ".tmp.keras")
    serving.save(tmp)
    tmp.replace(path)


def plot_history(history: list[dict], path: Path) -> Path:
    """Training curves (loss per epoch, validation window AUC per epoch) as a PNG."""
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = figures.subplots(1, 2, figsize=(9, 3.5), dpi=100)
    a.plot(epochs, [h["loss"] for h in history], marker="o")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss (BCE)")
    validated = [h for h in history if h["val_auc"] is not None]
    b.plot([h["epoch"] for h in validated], [h["val_auc"] for h in validated], marker="o", c="tab:green")
    b.set_xlabel("epoch")
    b.set_ylabel("val window AUC (no TTA)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return figures.save(fig, path)


def checkpoint_eligible(size: int, any_resolution: bool) -> bool:
    """Whether an epoch trained at ``size`` px may become the shipped checkpoint.

    Validation always runs the serving path (224 px windows), so any validated epoch may,
    unless ``checkpoint_any_resolution`` is off. The model card applies the same rule.
    """
    return size == MODEL_INPUT or any_resolution


def train(cfg: TrainConfig, progress: Callable[[Progress], None] | None = None) -> ModelInfo:
    """Train a candidate model and write it (``cfg.out`` + sidecar + training curves).

    Raises
    ------
    DatasetError
        When ``cfg.data_dir`` does not hold ARCADE's layout; nothing is written then.
    """
    configure_tensorflow()


    started = time.time()
    members = []
    for index in range(1, cfg.members):  # the other members first, each a whole training run
        member_cfg = replace(cfg, seed=cfg.seed + index, members=1, out=cfg.member_out(index), workdir=None)
        member_best, member_history = _train_one(member_cfg, progress)
        Path(member_cfg.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(member_best, member_cfg.out)
        members.append((Path(member_cfg.out), member_history))
    best_path, history = _train_one(cfg, progress)
    val_split = load_split(cfg.data_dir, "val", cfg.limit_val)
    return finalize(best_path, cfg, val_split, history, started, members=members)


def _train_one(cfg: TrainConfig, progress: Callable[[Progress], None] | None) -> tuple[Path, list[dict]]:
    """One training run; returns the best checkpoint's serving file (in the work folder) and the history."""
    import keras
    import tensorflow as tf

    from arcade_pacs.training.network import build_classifier

    started = time.time()
    train_split = load_split(cfg.data_dir, "train", cfg.limit_train)
    val_split = load_split(cfg.data_dir, "val", cfg.limit_val)
    sampler = WindowSampler(train_split, cfg)

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(cfg.workdir) if cfg.workdir else out.parent / f".{out.stem}.work"
    workdir.mkdir(parents=True, exist_ok=True)

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_classifier(None, cfg.backbone, cfg.init, cfg.imagenet_weights, drop_connect=cfg.drop_connect)
    backbone = model.get_layer("backbone")
    # One optimiser per phase: an optimiser's slots are made for the variables it first sees.
    optimizers = {
        phase: keras.optimizers.AdamW(learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay, clipnorm=2.0)
        for phase in ("head", "whole")
    }
    loss_fn = keras.losses.BinaryCrossentropy()
    images = tf.constant(train_split.images[..., None])  # uint8 (N, 512, 512, 1)

    def set_phase(phase: str):
        """Freeze or thaw the backbone for ``phase`` and return that phase's compiled step."""
        backbone.trainable = phase == "whole"
        if phase == "whole" and cfg.freeze_bn:
            for layer in backbone.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        optimizer = optimizers[phase]

        @tf.function(reduce_retracing=True)
        def train_step(idx, transforms, contrast, brightness, gamma, noise, noise_seed, labels, out_size):
            x = training_windows(images, idx, transforms, out_size)
            x = photometric(x, contrast, brightness, gamma, noise, noise_seed)
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = loss_fn(labels[:, None], pred)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        return optimizer, train_step

    predict_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predict(x):
        return np.concatenate(
            [predict_fn(tf.constant(x[i : i + 64])).numpy().reshape(-1) for i in range(0, len(x), 64)]
        )

    ckpt = tf.train.Checkpoint(model=model, head_optimizer=optimizers["head"], optimizer=optimizers["whole"])
    state_path = workdir / "state.json"
    history: list[dict] = []
    start_epoch, best_auc = 0, -1.0
    best_path = workdir / "best.keras"
    if cfg.resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        ckpt.restore(state["checkpoint"]).expect_partial()
        history, start_epoch, best_auc = state["history"], state["epoch"], state["best_auc"]

    step_times: list[float] = []
    phase = None
    for epoch in range(start_epoch, cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        out_size = cfg.epoch_size(epoch)
        epoch_phase = "head" if epoch < cfg.freeze_epochs else "whole"
        if epoch_phase != phase:
            phase = epoch_phase
            optimizer, train_step = set_phase(phase)
            first_step, phase_steps, peak = cfg.phase_steps(epoch)
            schedule = OneCycle(peak, phase_steps, cfg.warmup_fraction)
        losses, sample_s, epoch_t0 = [], 0.0, time.time()
        for step in range(cfg.steps_per_epoch):
            t0 = time.time()
            optimizer.learning_rate.assign(schedule(epoch * cfg.steps_per_epoch + step - first_step))
            b = sampler.batch(rng, cfg.batch_size, out_size)
            sample_s += time.time() - t0  # the data side: must stay a small share of a step
            loss = train_step(
                tf.constant(b["images"], tf.int32), tf.constant(b["transforms"]),
                tf.constant(b["contrast"]), tf.constant(b["brightness"]), tf.constant(b["gamma"]),
                tf.constant(b["noise"]), tf.constant(b["noise_seed"], tf.int64),
                tf.constant(b["labels"]), out_size,
            )
            losses.append(float(loss))
            step_times.append((time.time() - t0) * (MODEL_INPUT / out_size) ** 2)
            if progress and (step % 10 == 9 or step == cfg.steps_per_epoch - 1):
                progress(_progress(cfg, epoch, step, losses, started, step_times, None, history))
        # Validation picks the checkpoint, so it runs after every serving-resolution epoch;
        # during the low-resolution phase every `low_res_val_every` epochs is enough to watch.
        step_ms = 1000 * (time.time() - epoch_t0) / cfg.steps_per_epoch
        validate = out_size == MODEL_INPUT or (epoch + 1) % cfg.low_res_val_every == 0
        val_auc = window_auc(score_split(predict, val_split, tta=False)) if validate else None
        record = {
            "epoch": epoch + 1,
            "size": out_size,
            "loss": float(np.mean(losses)),
            "val_auc": val_auc,
            "lr_end": float(optimizer.learning_rate.numpy()),
            "phase": phase,
            "step_ms": round(step_ms, 1),
            "sample_ms": round(1000 * sample_s / cfg.steps_per_epoch, 2),
            "elapsed_s": round(time.time() - started, 1),
        }
        history.append(record)
        if checkpoint_eligible(out_size, cfg.checkpoint_any_resolution) and val_auc is not None and val_auc > best_auc:
            best_auc = val_auc
            _save_serving_model(model, best_path, cfg)
        if cfg.keep_epochs:
            _save_serving_model(model, workdir / f"epoch{epoch + 1:02d}.keras", cfg)
        saved = ckpt.write(str(workdir / "ckpt"))
        state_path.write_text(json.dumps(
            {"checkpoint": saved, "epoch": epoch + 1, "best_auc": best_auc, "history": history}, indent=1
        ))
        if progress:
            progress(_progress(cfg, epoch, cfg.steps_per_epoch - 1, losses, started, step_times, val_auc, history))

    if not best_path.is_file():  # e.g. every epoch at low resolution: ship the last weights
        _save_serving_model(model, best_path, cfg)
    return best_path, history


def _progress(cfg, epoch, step, losses, started, step_times, val_auc, history) -> Progress:
    remaining = 0.0
    per224 = float(np.mean(step_times[-50:])) if step_times else 0.0
    for e in range(epoch, cfg.epochs):
        steps_left = cfg.steps_per_epoch - (step + 1) if e == epoch else cfg.steps_per_epoch
        remaining += steps_left * per224 * (cfg.epoch_size(e) / MODEL_INPUT) ** 2
    remaining += (cfg.epochs - epoch - (1 if val_auc is not None else 0)) * 60.0  # validation passes
    return Progress(
        epoch=epoch + 1, epochs=cfg.epochs, step=step + 1, steps=cfg.steps_per_epoch,
        loss=float(np.mean(losses[-20:])), elapsed_s=time.time() - started,
        eta_s=max(0.0, remaining), val_auc=val_auc, history=list(history),
    )


def finalize(best_path: Path, cfg: TrainConfig, val_split: Split, history: list[dict], started: float,
             members: list[tuple[Path, list[dict]]] | None = None) -> ModelInfo:
    """Calibrate on ``val``, choose the threshold there, write model + sidecar + curves to ``cfg.out``.

    ``members`` are further trained members already written beside ``cfg.out`` (an ensemble):
    the calibration is fitted on their average with the main model, pass by pass.
    """
    import keras

    out = Path(cfg.out)
    tmp = out.with_name(out.stem + ".tmp.keras")
    shutil.copyfile(best_path, tmp)
    tmp.replace(out)
    members = members or []
    shas = [weights_sha256(keras.models.load_model(p, compile=False)) for p in [out, *(m for m, _ in members)]]
    info = ModelInfo(name=model_name(cfg.backbone), members=[Path(m).name for m, _ in members],
                     backbone=cfg.backbone, init=cfg.init)
    calibrate_model(out, info, val_split, cfg.target_fpr)
    now = datetime.now(UTC)
    info.version, info.device_uid = model_identity(shas, info.calibration, cfg.seed, now, cfg.backbone)
    info.created = now.isoformat(timespec="seconds")
    cfg_dict = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    info.training = {
        "config": cfg_dict,
        "history": history,
        "member_histories": [h for _, h in members],
        "minutes": round((time.time() - started) / 60, 1),
        "weights_sha256": shas[0],
        "member_weights_sha256": shas[1:],
        "imagenet_init": cfg.init == "imagenet",
    }
    info.write(out)
    plot_history(history, out.with_name(out.stem + "_training.png"))
    return info


def write_forms(out: Path, data_dir: Path, limit_val: int | None = None) -> None:
    """Build and check the serving forms of the model just written (:mod:`arcade_pacs.model.build`):
    the package leaves ``arcade-pacs train``, ``calibrate`` and a promoted retrain ready to serve
    with no data. A failed build is logged; the model then serves by Keras under
    ``model.engine = "auto"`` until ``arcade-pacs engine --build``."""
    import logging

    from arcade_pacs.model.build import build_forms
    from arcade_pacs.settings import ModelSettings, val_images_dir

    try:
        forms = build_forms(out, ModelSettings(check_images=limit_val or 0), val_images_dir(data_dir), force=True)
    except Exception:
        logging.getLogger(__name__).exception("the serving form of %s could not be built", out)
        return
    for form in forms:
        c = form.manifest["check"]
        print(f"LiteRT form {form.path.name}: max |dp| {c['max_abs_diff']:.1e}, {c['flips']} flips on "
              f"{c['windows']} val windows: {'passed' if c['passed'] else 'FAILED'}", flush=True)


def calibrate_model(path: Path, info: ModelInfo, val_split: Split, target_fpr: float):
    """Fit ``info``'s calibration and threshold on ``val`` for the model (and members) at ``path``.

    Scores each val window's serving views with the raw members' average, fits the Platt map,
    chooses the threshold on the calibrated scale; sets ``info.calibration``, ``.threshold`` and
    ``.metrics["val"]`` (with the expected calibration error before and after) and returns the fit.
    """
    from arcade_pacs.model.classifier import Classifier
    from arcade_pacs.model.keras_engine import KerasEngine
    from arcade_pacs.training.calibrate import fit_on_views, tta_views

    raw = replace(info, calibration={})
    engines = [KerasEngine.load(p) for p in raw.member_paths(path)]
    classifier = Classifier(engines[0].model, raw, path, engine=engines[0], members=engines[1:])
    calibrated = fit_on_views(tta_views(classifier.predict, val_split), target_fpr)
    info.calibration = calibrated.platt.to_json()
    info.threshold = calibrated.threshold
    info.metrics = {"val": calibrated.metrics | {"ece_raw": calibrated.ece_raw,
                                                 "ece_calibrated": calibrated.ece_calibrated}}
    return calibrated


def package(model: Path, members: list[Path], out: Path, data_dir: Path, target_fpr: float = 0.10,
            limit_val: int | None = None) -> ModelInfo:
    """Make a served model from trained weights: ``model`` (its sidecar's training record kept)
    and further ``members`` averaged with it, calibrated on ``val`` with a new threshold, version
    and Device UID. Members are copied beside ``out`` as ``<out stem>_m1.keras``, ...
    """
    import keras

    model, out = Path(model), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = ModelInfo.read(model)
    if model.resolve() != out.resolve():
        shutil.copyfile(model, out)
        for suffix in ("_training.png",):
            extra = model.with_name(model.stem + suffix)
            if extra.is_file():
                shutil.copyfile(extra, out.with_name(out.stem + suffix))
    names = []
    for index, member in enumerate(members, start=1):
        target = out.with_name(f"{out.stem}_m{index}{out.suffix}")
        shutil.copyfile(member, target)
        names.append(target.name)
    info = ModelInfo(name=source.name, members=names, training=source.training, backbone=source.backbone,
                     init=source.init)
    calibrate_model(out, info, load_split(data_dir, "val", limit_val), target_fpr)
    shas = [weights_sha256(keras.models.load_model(p, compile=False)) for p in info.member_paths(out)]
    now = datetime.now(UTC)
    seed = int(source.training.get("config", {}).get("seed", 0))
    info.version, info.device_uid = model_identity(shas, info.calibration, seed, now, source.backbone)
    info.created = now.isoformat(timespec="seconds")
    info.training = source.training | {"packaged_from": source.version, "member_weights_sha256": shas[1:]}
    info.write(out)
    write_forms(out, data_dir, limit_val)
    return info
