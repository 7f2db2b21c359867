"""``arcade-pacs bench [--quick] [--json]``: every performance figure of the plugin in one run.

In order, each step shown as it runs (standard error) and summed up in a table (standard
output; with ``--json`` one JSON object as the last line):

1. **machine**: CPU, cores, ISA, load, runtime versions.
2. **compute**: single-precision GEMM GFLOP/s (numpy's BLAS, every core), the float LiteRT
   engine's passes per second at several batch sizes (best kept: ``passes_per_s``), the int8
   form's at that batch with its gate and own validation (``int8``), Keras ``model.predict``
   one window at a time as the original service called it (``keras_predict_passes_per_s``), and
   ``fraction_of_peak`` = passes/s x FLOPs per pass / SGEMM FLOP/s.
3. **plugin**: ``arcade-pacs serve`` started as its own process (quiet period 0, the configured
   model and engine: under ``auto`` the int8 form when it was validated; ``engine`` says which); ``startup_s`` = spawn to ``/health`` reporting the model
   loaded (warm-up included).
4. **ingest**: the same 60-frame 512x512 cines sent by ``storescu`` in one association to DCMTK's
   ``storescp`` and to the plugin (fsync, database rows): MB/s of each, same files, same run.
5. **end to end**: one 60-frame cine per study, ``storescu`` -> plugin -> SR -> ``storescp``:
   seconds from the C-STORE response to the SR's arrival, p50 and p95 over the runs.
6. **study**: 10 such cines in one study in one association: seconds from the last C-STORE
   response to the SR that references all of them (``study_10x60_s``).
7. **HTTP**: the original Locust profile against ``/predict`` (:mod:`.load`).
8. **memory**: the serve process's peak RSS (VmHWM) after all of the above.

Warm-up is excluded from every timing (the engine's first call per batch size, the plugin's
own warm-up at start). A peer that is missing fails the bench; no figure is ever invented.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arcade_pacs.bench import compute, load, peers


@dataclass(frozen=True)
class Plan:
    """How much of each step to run."""

    batches: tuple[int, ...]
    engine_seconds: float
    engine_repeats: int
    keras_calls: int
    e2e_runs: int
    study_runs: int
    ingest_files: int
    load_seconds: float

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:  # a smoke run under 2 minutes: every figure, fewer repetitions
            return cls((4, 16), 0.6, 2, 6, 3, 3, 3, 15.0)
        return cls((1, 4, 8, 16, 32), 2.0, 5, 30, 12, 10, 10, 60.0)


TARGETS = {
    "passes_per_s": (">=", 200),
    "e2e_latency_p50_s": ("<=", 1.5),
    "e2e_latency_p95_s": ("<=", 3.0),
    "study_10x60_s": ("<=", 10.0),
    "ingest_ratio": (">=", 0.8),
    "predict_failures": ("<=", 0),
    "predict_p95_s": ("<=", 1.0),
    "predict_passes_per_s_per_cpu": (">=", 95.0),
    "peak_rss_mb": ("<=", 1000),
    "startup_s": ("<=", 3.0),
    "speedup_vs_keras_predict": (">=", 10.0),
}

ROWS = [
    ("engine", "serving engine", ""),
    ("passes_per_s", "engine passes/s (best batch)", ""),
    ("passes_per_s_batch", "  at batch", ""),
    ("int8_passes_per_s", "int8 form passes/s (same batch)", ""),
    ("int8_gate_passed", "  its gate on val (AUC drop, flips)", ""),
    ("int8_own_passed", "  validated as its own model on val", ""),
    ("keras_predict_passes_per_s", "Keras model.predict, 1 window/call", "passes/s"),
    ("speedup_vs_keras_predict", "speed-up over that", "x"),
    ("sgemm_gflops", "SGEMM (numpy BLAS)", "GFLOP/s"),
    ("gflops_per_pass", "one pass of the network", "GFLOP"),
    ("fraction_of_peak", "engine FLOP/s / SGEMM FLOP/s", ""),
    ("startup_s", "start-up to model loaded", "s"),
    ("ingest_mb_per_s", "ingest, plugin (fsync + rows)", "MB/s"),
    ("dcmtk_ingest_mb_per_s", "ingest, DCMTK storescp", "MB/s"),
    ("ingest_ratio", "plugin / storescp", ""),
    ("e2e_latency_p50_s", "C-STORE response -> SR, p50", "s"),
    ("e2e_latency_p95_s", "C-STORE response -> SR, p95", "s"),
    ("study_10x60_s", "last C-STORE response -> study SR", "s"),
    ("predict_rps", "/predict requests/s (50 users)", "1/s"),
    ("predict_p95_s", "/predict p95", "s"),
    ("predict_failures", "failed requests", ""),
    ("predict_passes_per_s_per_cpu", "/predict passes/s per CPU", ""),
    ("peak_rss_mb", "serve peak RSS (with its worker process)", "MB"),
    ("worker_peak_rss_mb", "worker process's own peak RSS", "MB"),
]


def met(key: str, value) -> str:
    if key not in TARGETS or not isinstance(value, (int, float)) or value != value:
        return ""
    op, target = TARGETS[key]
    ok = value >= target if op == ">=" else value <= target
    return f"{'met' if ok else 'MISSED'} ({op} {target:g})"


def table(result: dict) -> str:
    lines = [f"{'figure':<46} {'value':>12}  {'unit':<8} target", "-" * 86]
    for key, label, unit in ROWS:
        value = result.get(key)
        if key == "study_10x60_s":
            label = f"{label} ({result.get('study_runs')} cines)"
        if key == "e2e_latency_p95_s":
            label = f"{label} ({result.get('e2e_runs')} runs)"
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"{label:<46} {shown:>12}  {unit:<8} {met(key, value)}")
    m = result["machine"]
    lines.append("-" * 86)
    lines.append(f"{m['cpu']}, {m['cores']} cores, {', '.join(m['isa'])}; load average {m['load_average_1m']} "
                 f"at start; {json.dumps(m['versions'])}")
    noise = result["noise"]
    lines.append(f"noise (min-max): engine passes/s {noise['passes_per_s']}, e2e s {noise['e2e_latency_s']}, "
                 f"SGEMM {noise['sgemm_gflops']}")
    return "\n".join(lines)


class Progress:
    """One line per step on standard error, with the elapsed time."""

    def __init__(self, steps: int, stream=sys.stderr):
        self.steps, self.step, self.stream = steps, 0, stream
        self.started = time.monotonic()

    def next(self, title: str) -> None:
        self.step += 1
        self.say(f"[{self.step}/{self.steps}] {title}")

    def say(self, message: str) -> None:
        print(f"  {time.monotonic() - self.started:6.1f}s  {message}", file=self.stream, flush=True)


def run(settings, quick: bool = False, progress: Progress | None = None) -> dict:
    """Measure everything; return the flat result (see :data:`ROWS`) plus details."""
    from arcade_pacs.model import forms, serving
    from arcade_pacs.model.keras_engine import KerasEngine

    plan = Plan.of(quick)
    progress = progress or Progress(8)
    say: Callable[[str], None] = progress.say
    for name in ("storescu", "storescp"):
        peers.tool(name)  # fail now, before anything is measured, if a peer is missing
    data_dir = Path(settings.data_dir)
    images_dir = settings.val_images
    model_path = Path(settings.model.path)
    started = time.monotonic()
    result: dict = {"quick": quick}

    progress.next("machine")
    result["machine"] = compute.machine()
    say(f"{result['machine']['cpu']}, {result['machine']['cores']} cores, load {result['machine']['load_average_1m']}")

    progress.next("compute: SGEMM, the serving engine, Keras predict")
    sgemm = compute.sgemm_gflops(repeats=3 if quick else 7)
    say(f"SGEMM {sgemm['best']} GFLOP/s (min {sgemm['min']})")
    build_s = None
    if settings.model.engine != "keras" and forms.current(model_path) is None:
        from arcade_pacs.model.build import build_forms

        say("building the LiteRT form first (once per model; shipped beside it; excluded from start-up)")
        t = time.monotonic()
        build_forms(model_path, settings.model, images_dir)
        build_s = round(time.monotonic() - t, 1)
    # The float engine's figure (passes_per_s, its target): under "auto" the int8 form may serve
    # the plugin below, and its own figure is measured next, on the same windows and batch.
    float_model = settings.model if settings.model.engine == "keras" else settings.model.model_copy(update={"engine": "litert"})
    _, chosen = serving.load(float_model)
    engine = chosen.engine
    say(f"serving engine: {engine.name} ({chosen.reason})")
    windows = compute.real_windows(images_dir)
    rates = compute.engine_rates(engine, windows, list(plan.batches), plan.engine_seconds, plan.engine_repeats, say)
    best = max(rates, key=lambda b: rates[b]["median"])
    int8 = int8_figures(model_path, windows, best, plan, settings.model.threads, say)
    keras_engine = engine if engine.name == "keras" else KerasEngine.load(model_path)
    keras_rate = compute.keras_predict_rate(keras_engine.model, windows, plan.keras_calls)
    say(f"Keras model.predict one window per call: {keras_rate['median']} passes/s")
    flops = compute.flops_per_pass(keras_engine.model)
    del keras_engine, engine, chosen

    with tempfile.TemporaryDirectory(prefix="arcade-bench-") as tmp:
        work = Path(tmp)
        pixels = peers.rubo_frames(data_dir, 60)
        pacs = peers.StoreSCP(work / "pacs")
        dcmtk = peers.StoreSCP(work / "dcmtk", notify=False)
        plugin = None
        try:
            progress.next("plugin: arcade-pacs serve (quiet period 0)")
            (work / "plugin").mkdir()
            plugin = peers.start_plugin(work / "plugin", settings, pacs.port)
            say(f"ready in {plugin.startup_s:.1f}s; engine {plugin.status['model'].get('engine')}")

            progress.next(f"ingest: {plan.ingest_files} cines to storescp, then to the plugin")
            _, files = peers.study_files(pixels, work / "ingest", plan.ingest_files)
            mb = sum(f.stat().st_size for f in files) / 1e6
            d = peers.store(files, dcmtk.port, "PACS")
            dcmtk_rate = mb / (d["ended"] - d["started"])
            p = peers.store(files, plugin.scp_port, "ARCADE")
            plugin_rate = mb / (p["ended"] - p["started"])
            say(f"{mb:.0f} MB: storescp {dcmtk_rate:.0f} MB/s, plugin {plugin_rate:.0f} MB/s; waiting for the analyses")
            plugin.idle(600, reports=1)

            progress.next(f"end to end: {plan.e2e_runs} single-cine studies")
            latencies = []
            for i in range(plan.e2e_runs):
                study, files = peers.study_files(pixels, work / f"e2e{i}", 1)
                sent = peers.store(files, plugin.scp_port, "ARCADE")
                arrived = pacs.wait_sr(study, timeout=300)
                latencies.append(arrived - sent["responses"][-1])
                say(f"run {i + 1}: {latencies[-1]:.2f}s")

            progress.next(f"study: {plan.study_runs} cines in one study")
            study, files = peers.study_files(pixels, work / "study", plan.study_runs)
            sent = peers.store(files, plugin.scp_port, "ARCADE")
            study_s = pacs.wait_sr(study, timeout=600, instances=len(files)) - sent["responses"][-1]
            say(f"SR {study_s:.2f}s after the last C-STORE response")
            plugin.idle(300, reports=1 + plan.e2e_runs + 1)

            progress.next(f"HTTP: {load.USERS} users for {plan.load_seconds:.0f}s against /predict")
            png = sorted(images_dir.glob("*.png"), key=lambda q: (len(q.stem), q.stem))[0].read_bytes()
            http = load.run_load(peers.LOOPBACK, plugin.admin_port, png, plan.load_seconds)
            say(f"{http['predict_rps']} predict/s, p95 {http['predict_p95_s']}s, {http['predict_failures']} failures")

            progress.next("memory")
            rss = plugin.peak_rss_mb()
            worker_rss = plugin.worker_peak_rss_mb()
            engine_served = plugin.get("/status")["model"].get("engine")
        finally:
            if plugin is not None:
                plugin.close()
            pacs.close()
            dcmtk.close()

    cores = result["machine"]["cores"]
    passes = rates[best]["median"]
    lat = np.array(latencies)
    result |= {
        "engine": engine_served,
        "passes_per_s": passes,
        "passes_per_s_batch": best,
        "passes_per_s_by_batch": {str(b): r for b, r in rates.items()},
        "serving_batch": settings.model.batch_size if engine_served == "keras" else settings.model.litert_batch,
        "keras_predict_passes_per_s": keras_rate["median"],
        "speedup_vs_keras_predict": round(passes / keras_rate["median"], 1),
        "sgemm_gflops": sgemm["best"],
        "gflops_per_pass": round(flops / 1e9, 3),
        "fraction_of_peak": round(passes * flops / (sgemm["best"] * 1e9), 3),
        "engine_build_s": build_s,
        "int8": int8,
        "int8_passes_per_s": int8["passes_per_s"] if int8 else None,
        "int8_gate_passed": int8["gate"].get("passed") if int8 else None,
        "int8_own_passed": int8["own"].get("passed") if int8 else None,
        "startup_s": round(plugin.startup_s, 2),
        "ingest_mb_per_s": round(plugin_rate, 1),
        "dcmtk_ingest_mb_per_s": round(dcmtk_rate, 1),
        "ingest_ratio": round(plugin_rate / dcmtk_rate, 2),
        "ingest_mb": round(mb, 1),
        "e2e_latency_p50_s": round(float(np.percentile(lat, 50)), 3),
        "e2e_latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        "e2e_runs": len(latencies),
        "study_10x60_s": round(study_s, 3),
        "study_runs": plan.study_runs,
        "predict_rps": http["predict_rps"],
        "predict_p95_s": http["predict_p95_s"],
        "predict_failures": http["predict_failures"],
        "predict_passes_per_s_per_cpu": round(http["predict_rps"] * 18 / cores, 1),
        "http": http,
        "peak_rss_mb": rss,
        "worker_peak_rss_mb": worker_rss,
        "noise": {
            "passes_per_s": [rates[best]["min"], rates[best]["max"]],
            "keras_predict_passes_per_s": [keras_rate["min"], keras_rate["max"]],
            "e2e_latency_s": [round(float(lat.min()), 3), round(float(lat.max()), 3)],
            "sgemm_gflops": [sgemm["min"], sgemm["best"]],
        },
        "bench_s": round(time.monotonic() - started, 1),
    }
    return result


def int8_figures(model_path: Path, windows: np.ndarray, batch: int, plan: Plan, threads: int,
                 say: Callable[[str], None]) -> dict | None:
    """The int8 form's passes per second (same windows and batch as the float engine), the gate
    and its own validation it was judged by (the manifest's, :mod:`arcade_pacs.training.quantize`), or ``None`` without one.

    Measured only when the form is the file its manifest lists, for these very weights.
    """
    from arcade_pacs.model import forms
    from arcade_pacs.model.engine import LiteRTEngine

    form = forms.current(model_path, kind=forms.LITERT_INT8)
    if form is None:
        say("int8: no current full-integer form beside the model (arcade-pacs engine --int8 builds one)")
        return None
    engine = LiteRTEngine(form.path, threads, batch)
    rate = compute.engine_rates(engine, windows, [batch], plan.engine_seconds, plan.engine_repeats, say)[batch]
    gate = form.entry.get("gate", {})
    own = form.own
    say(f"int8: {rate['median']} passes/s at batch {batch}; gate {'passed' if gate.get('passed') else 'FAILED'} "
        f"(val AUC drop {gate.get('auc_drop')}, {gate.get('flip_fraction')} of decisions flipped); as its own "
        f"model {'passed' if form.servable else 'FAILED'}")
    return {"passes_per_s": rate["median"], "batch": batch, "servable": form.servable,
            "gate": {k: gate.get(k) for k in ("passed", "auc_float", "auc_int8", "auc_drop", "flips",
                                              "flip_fraction", "windows", "max_abs_diff")},
            "own": {"passed": own.get("passed"), "version": own.get("version"), "threshold": own.get("threshold"),
                    "val": {k: own.get("val", {}).get(k) for k in ("window_auc", "image_sensitivity",
                                                                   "negative_window_fpr")}}}


REQUIRED_NUMERIC = (
    "passes_per_s", "keras_predict_passes_per_s", "sgemm_gflops", "fraction_of_peak", "e2e_latency_p50_s",
    "e2e_latency_p95_s", "study_10x60_s", "ingest_mb_per_s", "dcmtk_ingest_mb_per_s", "predict_rps",
    "predict_p95_s", "predict_failures", "peak_rss_mb", "startup_s",
)
"""The fields the issue asks every run to print (numbers; plus ``engine`` and ``machine``)."""


def main(settings, quick: bool, as_json: bool) -> int:
    result = run(settings, quick)
    print(table(result))
    if as_json:
        print(json.dumps(result, default=float))
    return 0
