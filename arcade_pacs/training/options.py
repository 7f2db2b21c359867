"""Model selection on ``val``: members and test-time views scored once, every option compared.

``arcade-pacs options --member NAME=PATH ... --out FILE`` scores each member's views of the
val grid (:mod:`arcade_pacs.training.views`, cached in a bank per member), then evaluates every
option (a set of members averaged, a set of views averaged) with the protocol's metrics at a
threshold chosen on val itself for the target FPR, and its inference cost in passes per window.
The rule that picks the option to ship is stated in the model card before the table.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from arcade_pacs.training.evaluate import metrics
from arcade_pacs.training.metrics import threshold_for_fpr
from arcade_pacs.training.views import VIEWS, Option, ViewBank, as_split_scores, option_scores, score_views

VIEW_SETS = (
    ("original",),
    ("original", "hflip"),
    ("original", "hflip", "vflip", "hvflip"),
    ("original", "hflip", "rot+10", "rot-10"),
    ("original", "hflip", "scale1.25"),
)
"""The TTA view sets compared (``original`` + ``hflip`` is the product's default)."""


ViewProgress = Callable[[str, int], AbstractContextManager]
"""``progress(member, total)``: a context manager yielding ``report(view, n, views_total)``."""


def member_banks(members: Iterable[tuple[str, Path]], split, folder: Path, cache: bool = True,
                 progress: ViewProgress | None = None) -> dict[str, ViewBank]:
    """Each member's val scores under every view of :data:`~arcade_pacs.training.views.VIEWS`.

    Scoring a model under every view takes minutes, so a member's bank is kept in
    ``folder/<name>_val.npz`` and only the views it lacks are scored (``cache=False``, e.g. on a
    subset of val, neither reads nor writes it).
    """
    from arcade_pacs.model.serving import load
    from arcade_pacs.settings import ModelSettings

    banks: dict[str, ViewBank] = {}
    for name, path in members:
        cached = Path(folder) / f"{name}_val.npz"
        bank = ViewBank.load(cached) if cache and cached.is_file() else None
        missing = [VIEWS[v] for v in VIEWS if bank is None or v not in bank.scores]
        if missing:
            # The member's checked LiteRT form where it has one (its outputs within 1e-4 of
            # Keras', three times as fast), else Keras: model.engine "auto"'s rule.
            predict = load(ModelSettings(path=Path(path)))[0].predict
            with (progress(name, len(missing) * len(split)) if progress else nullcontext()) as report:
                bank = score_views(predict, split, missing, name, bank=bank, progress=report)
            if cache:
                bank.save(cached)
        banks[name] = bank
    return banks


def options_for(members: Iterable[str], view_sets=VIEW_SETS) -> list[Option]:
    """Every non-empty set of members with every view set."""
    members = list(members)
    combos = [c for n in range(1, len(members) + 1) for c in itertools.combinations(members, n)]
    return [Option(c, v) for c in combos for v in view_sets]


def evaluate_options(banks: dict[str, ViewBank], options: list[Option], target_fpr: float) -> list[dict]:
    """Val metrics of each option whose views every member's bank holds, best AUC first."""
    rows = []
    for option in options:
        if not all(v in banks[m].scores for m in option.members for v in option.views):
            continue
        scores = option_scores(banks, option)
        bank = banks[option.members[0]]
        threshold = threshold_for_fpr(scores[bank.labels == 0], target_fpr)
        m = metrics(as_split_scores(bank, scores), threshold)
        rows.append({"option": option.label(), "members": list(option.members), "views": list(option.views),
                     "passes_per_window": option.passes_per_window, "window_auc": m["window_auc"],
                     "image_sensitivity": m["image_sensitivity"], "negative_window_fpr": m["negative_window_fpr"],
                     "threshold": threshold})
    return sorted(rows, key=lambda r: -r["window_auc"])


def choose(rows: list[dict], max_passes: int, required_views: tuple[str, ...] = ("original", "hflip")) -> dict:
    """The rule: best val AUC among options within ``max_passes`` per window that keep the views
    the SR and ``/predict`` describe (original + horizontal flip)."""
    allowed = [r for r in rows if r["passes_per_window"] <= max_passes and set(required_views) <= set(r["views"])]
    if not allowed:
        raise ValueError(f"no option within {max_passes} passes per window keeps {required_views}")
    return max(allowed, key=lambda r: r["window_auc"])


def table(rows: list[dict], chosen: dict | None = None) -> str:
    """The options as a markdown table (the model card's)."""
    lines = ["| option (members × views) | passes per window | val window AUC | image sensitivity | negative-window FPR |",
             "|---|---|---|---|---|"]
    for r in rows:
        mark = " **(shipped)**" if chosen is not None and r["option"] == chosen["option"] else ""
        lines.append(f"| {r['option']}{mark} | {r['passes_per_window']} | {r['window_auc']:.4f} | "
                     f"{r['image_sensitivity']:.3f} | {r['negative_window_fpr']:.3f} |")
    return "\n".join(lines)


def write(rows: list[dict], chosen: dict, rule: str, path: Path) -> None:
    Path(path).write_text(json.dumps({"rule": rule, "chosen": chosen, "options": rows}, indent=2) + "\n")
