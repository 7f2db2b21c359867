"""What the CPU can do and what the engines make of it: SGEMM, FLOPs per pass, passes per second.

All inputs are real: the grid windows of an ARCADE val picture, as given and mirrored (the
serving protocol). Warm-up runs are excluded; each figure is the median of repeated timings,
with the min-max beside it to show the machine's noise.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def machine() -> dict:
    """CPU model, cores usable by this process, memory, runtime versions."""
    from arcade_pacs.model.engine import versions

    model, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line + " "
    except OSError:
        pass
    model = model or platform.processor()
    mem_gb = None
    try:
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        mem_gb = round(mem_kb / 2**20, 1)
    except (OSError, StopIteration):
        pass
    isa = [f for f in ("avx512f", "avx512_vnni", "avx512_bf16", "avx2", "fma") if f" {f}" in flags]
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "isa": isa,
        "memory_gb": mem_gb,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "versions": versions(),
    }


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """Single-precision matrix multiply (numpy's BLAS, every core): GFLOP/s, best and min."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"best": round(max(rates), 1), "min": round(min(rates), 1), "median": round(float(np.median(rates)), 1)}


def flops_per_pass(model) -> float:
    """Multiply-adds of one 224x224 pass, counted layer by layer (x2: FLOPs); nested models included."""
    import keras

    macs = 0.0

    def shape(t):
        return tuple(int(d) for d in t.shape[1:])

    def walk(m):
        nonlocal macs
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                h, w, c = shape(layer.output)
                kh, kw = layer.kernel_size
                macs += h * w * c * kh * kw
            elif isinstance(layer, keras.layers.Conv2D):
                h, w, cout = shape(layer.output)
                cin = shape(layer.input)[-1]
                kh, kw = layer.kernel_size
                macs += h * w * cout * kh * kw * cin / layer.groups
            elif isinstance(layer, keras.layers.Dense):
                macs += shape(layer.input)[-1] * layer.units

    walk(model)
    return 2.0 * macs


def real_windows(images_dir: Path) -> np.ndarray:
    """The 9 grid windows of the first val picture and their mirrors: ``(18, 224, 224, 3)``."""
    from arcade_pacs.model.golden import val_images
    from arcade_pacs.pipeline.tensors import frame_tensors

    t = frame_tensors(next(val_images(images_dir, 1)))
    return np.concatenate([t, t[:, :, ::-1]], axis=0)


def tile(windows: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(windows))
    return np.concatenate([windows] * reps, axis=0)[:n]


def rate(fn: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, seconds: float, repeats: int) -> dict:
    """Passes per second of ``fn`` on ``batch``: ``repeats`` timings of about ``seconds`` each."""
    fn(batch)  # warm-up (allocation for this size; excluded)
    rates = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(batch)
            n += len(batch)
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        rates.append(n / elapsed)
    return {"median": round(float(np.median(rates)), 1), "min": round(min(rates), 1), "max": round(max(rates), 1)}


def engine_rates(engine, windows: np.ndarray, batches: list[int], seconds: float, repeats: int,
                 progress: Callable[[str], None] = lambda _m: None) -> dict[int, dict]:
    """``engine.predict`` at each batch size (the engine's own chunking set to that size)."""
    out = {}
    saved = engine.batch_size
    try:
        for b in batches:
            engine.batch_size = b
            out[b] = rate(engine.predict, tile(windows, b), seconds, repeats)
            progress(f"{engine.name} batch {b}: {out[b]['median']} passes/s ({out[b]['min']}-{out[b]['max']})")
    finally:
        engine.batch_size = saved
    return out


def keras_predict_rate(model, windows: np.ndarray, calls: int) -> dict:
    """Keras ``model.predict`` one window at a time, as the original ARCADE service called it."""
    one = windows[:1]
    for _ in range(2):  # warm-up: tracing of the predict function
        model.predict(one, verbose=0)
    times = []
    for i in range(calls):
        x = windows[i % len(windows)][np.newaxis]
        t = time.perf_counter()
        model.predict(x, verbose=0)
        times.append(time.perf_counter() - t)
    times = np.array(times)
    return {"median": round(float(1 / np.median(times)), 2), "min": round(float(1 / times.max()), 2),
            "max": round(float(1 / times.min()), 2), "calls": calls}
