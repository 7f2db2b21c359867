"""The original ARCADE service's Locust profile, as a small bounded load generator (stdlib only).

50 users; each waits 1-3 s (uniform) between tasks and picks ``GET /health`` or ``POST /predict``
(the same PNG every time) in the ratio 1:3, as ``tests/load/locustfile.py`` does for people who
run Locust. It only ever aims at a loopback address, runs for a bounded time, and stops by
itself; every request is counted, failures included (a non-2xx answer or an error).
"""

from __future__ import annotations

import http.client
import ipaddress
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

USERS = 50
WAIT_S = (1.0, 3.0)
HEALTH_WEIGHT, PREDICT_WEIGHT = 1, 3
REQUEST_TIMEOUT_S = 60.0


@dataclass
class Samples:
    predict: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def multipart(name: str, data: bytes, content_type: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _user(host: str, port: int, body: bytes, ctype: str, until: float, samples: Samples, seed: int) -> None:
    rnd = random.Random(seed)
    conn = None
    time.sleep(rnd.uniform(0, WAIT_S[0]))  # users start spread, as Locust's spawn does
    while time.monotonic() < until:
        predict = rnd.random() < PREDICT_WEIGHT / (HEALTH_WEIGHT + PREDICT_WEIGHT)
        t = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
            if predict:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
            else:
                conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            ok = 200 <= response.status < 300
            error = None if ok else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
            if conn is not None:
                conn.close()
            conn = None
        elapsed = time.monotonic() - t
        with samples.lock:
            if ok:
                (samples.predict if predict else samples.health).append(elapsed)
            else:
                samples.failures += 1
                if len(samples.errors) < 5:
                    samples.errors.append(error)
        time.sleep(rnd.uniform(*WAIT_S))
    if conn is not None:
        conn.close()


def run_load(host: str, port: int, png: bytes, seconds: float, users: int = USERS) -> dict:
    """Run the profile for ``seconds`` against ``host:port`` (loopback only); the figures."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the bench's load generator only aims at loopback, not {host}")
    body, ctype = multipart("frame.png", png, "image/png")
    samples = Samples()
    started = time.monotonic()
    until = started + seconds
    threads = [threading.Thread(target=_user, args=(host, port, body, ctype, until, samples, i), daemon=True)
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + REQUEST_TIMEOUT_S + 10)
    duration = time.monotonic() - started
    p = np.array(samples.predict) if samples.predict else np.array([float("nan")])
    return {
        "users": users,
        "duration_s": round(duration, 1),
        "predict_requests": len(samples.predict),
        "health_requests": len(samples.health),
        "predict_rps": round(len(samples.predict) / duration, 2),
        "predict_p50_s": round(float(np.percentile(p, 50)), 3),
        "predict_p95_s": round(float(np.percentile(p, 95)), 3),
        "health_p95_s": round(float(np.percentile(samples.health, 95)), 3) if samples.health else float("nan"),
        "predict_failures": samples.failures,
        "errors": samples.errors,
    }
