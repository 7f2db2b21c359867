"""The original ARCADE service's load profile, for people who use Locust (a development tool).

    pip install -e '.[load]'
    locust -f tests/load/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 60s

50 users, each waiting 1-3 s between tasks, health:predict 1:3, one PNG (an ARCADE val picture,
found through ``data_dir`` like everything else).
``arcade-pacs bench`` runs the same profile with its own bounded, loopback-only generator
(arcade_pacs/bench/load.py), so the figures do not need Locust; this file is for looking at a
running installation with Locust's UI. Aim it only at a server you run yourself.
"""

from __future__ import annotations

from locust import HttpUser, between, task

from arcade_pacs.settings import load_settings


def _png() -> bytes:
    images = load_settings().data_dir / "arcade" / "stenosis" / "val" / "images"
    return sorted(images.glob("*.png"), key=lambda p: (len(p.stem), p.stem))[0].read_bytes()


PNG = _png()


class ArcadeUser(HttpUser):
    wait_time = between(1, 3)

    @task(1)
    def health(self):
        self.client.get("/health")

    @task(3)
    def predict(self):
        self.client.post("/predict", files={"file": ("frame.png", PNG, "image/png")})
