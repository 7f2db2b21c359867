"""The dashboard in a real browser, after a real cine came in over DICOM.

storescu -> `arcade-pacs serve` (shipped model, admin token set) -> SR -> storescp; then Debian's
Chromium, headless, driven by playwright, reads every page as a user would.
"""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.integration.dashboard import TOKEN, admin_json, chromium, log_in, plugin_with_a_study, png_of

pytestmark = [pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def served(tmp_path_factory, rubo):
    with plugin_with_a_study(tmp_path_factory.mktemp("dashboard"), rubo) as plugin:
        yield plugin


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, served):
    """A logged-in page that records every console error and uncaught page error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    log_in(page, served.base)
    yield page
    context.close()


def pixel_spread(png: bytes) -> float:
    """Standard deviation of a decoded picture's grey levels (0 for a blank or flat image)."""
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32).std())


def test_home_lists_the_study(page, served):
    row = page.locator("#studies tbody tr", has_text=served.study_uid)
    assert row.count() == 1
    assert "sent" in row.inner_text()
    assert "1/1" in row.inner_text()
    assert page.locator("#health").inner_text().count("ready") >= 1
    assert "STORESCU" in page.locator("#associations").inner_text()
    # The live part is refreshed by htmx without reloading the page.
    with page.expect_response(lambda r: r.url.endswith("/ui/fragments/home") and r.status == 200, timeout=15_000):
        pass
    assert page.locator("#studies tbody tr", has_text=served.study_uid).count() == 1
    assert page.errors == []


def test_study_page_pictures_and_numbers(page, served, rubo):
    from arcade_pacs.pipeline.frames import FrameSource

    page.goto(f"{served.base}/ui/studies/{served.study_uid}")
    page.wait_for_load_state("networkidle")
    api = admin_json(served.base, f"/studies/{served.study_uid}")
    [run] = api["runs"]
    result = run["result"]

    images = page.locator("img.pic")
    n = images.count()
    # probability, opacification, TTA; overlay + histogram each; the result image sent to the PACS
    assert n == 3 + 2 * len(result["keyframes"]) + 1
    assert page.locator("img.result-image").count() == 1
    for i in range(n):
        img = images.nth(i)
        assert img.evaluate("e => e.complete && e.naturalWidth > 0"), img.get_attribute("src")
        response = page.request.get(served.base + img.get_attribute("src"))
        assert response.status == 200
        assert response.headers["content-type"] == "image/png"
        assert pixel_spread(response.body()) > 10, img.get_attribute("src")

    summary = page.locator(f"#run-{run['instance_id']} .run-summary").inner_text()
    assert f"{result['probability']:.3f}" in summary
    assert f"{result['threshold']:.3f}" in summary
    assert result["model_version"] in summary
    assert result["device_uid"] in summary

    # TTA view: the table shows the API's original and flipped views of each keyframe.
    for k in result["keyframes"]:
        cells = page.locator(f"#tta-{run['instance_id']} tr[data-frame='{k['frame_number']}'] td").all_inner_texts()
        assert cells[:5] == [str(k["frame_number"]), f"{k['opacification']:.4f}", f"{k['probability']:.3f}",
                             f"{k['tta']['original']:.3f}", f"{k['tta']['flipped']:.3f}"]

    # Histogram view: the numbers are the keyframe's own intensities, decoded here independently.
    source = FrameSource(rubo)
    source.scan()
    numbers = [k["frame_number"] for k in result["keyframes"]]
    frames = source.read([n - 1 for n in numbers])
    for number, frame in zip(numbers, frames.data, strict=True):
        values = frame[frames.valid]
        card = page.locator(f".keyframe[data-frame='{number}']")
        assert card.locator(".hist-mean").inner_text() == f"{values.mean():.3f}"
        assert card.locator(".hist-median").inner_text() == f"{np.median(values):.3f}"

    # The SR: delivered, downloadable, readable as text.
    assert "sent" in page.locator("#reports .deliveries").inner_text()
    text = page.request.get(served.base + api["reports"][0]["text"])
    assert text.status == 200
    assert "Imaging Measurement Report" in text.text()
    assert page.errors == []


def test_upload_returns_a_result_for_a_png(page, served, rubo, tmp_path):
    png = png_of(rubo, 55, tmp_path / "frame55.png")
    page.goto(f"{served.base}/ui/upload")
    page.set_input_files("#file", str(png))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-answer", timeout=120_000)
    shown = page.locator("#upload-answer .probability").inner_text()
    expected = page.request.post(served.base + "/predict", multipart={
        "file": {"name": "frame55.png", "mimeType": "image/png", "buffer": png.read_bytes()}}).json()
    assert shown == f"{expected['raw_score']:.3f}"
    sources = page.locator("#upload-answer img.pic").evaluate_all("els => els.map(e => e.src)")
    assert len(sources) >= 4  # probability, TTA, keyframe overlay, histogram (one frame: no curve)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert pixel_spread(base64.b64decode(src.split(",", 1)[1])) > 10
    assert page.errors == []


def test_cli_status_table_and_json(served):
    import json
    import os
    import subprocess
    import sys

    env = os.environ | {"ARCADE_ADMIN__TOKEN": TOKEN}
    args = [sys.executable, "-m", "arcade_pacs.cli", "status", "--url", served.base]
    table = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert table.returncode == 0, table.stderr  # ready
    assert "ready" in table.stdout
    assert "Result deliveries per destination" in table.stdout
    assert "pacs" in table.stdout
    assert "instances received" in table.stdout
    body = json.loads(subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=60, env=env).stdout)
    assert body["ready"]["status"] == "ready"
    assert body["status"]["backlog"]["pacs"]["sent"] == 2  # the SR and the result image
    assert body["status"]["instances_received"] == 1


def test_an_operation_without_the_token_is_refused(page, served):
    before = admin_json(served.base, f"/studies/{served.study_uid}")["runs"][0]["job"]
    page.goto(f"{served.base}/ui/studies/{served.study_uid}")
    with page.expect_response(lambda r: r.url.endswith("/reanalyse")) as answer:
        page.click("#reanalyse")
    assert answer.value.status == 401
    page.wait_for_selector("#op-result .refused")
    assert page.locator("#op-result").inner_text() == "Refused (401): admin token required"
    assert admin_json(served.base, f"/studies/{served.study_uid}")["runs"][0]["job"] == before
    # The browser's only complaint is the refused request itself.
    assert page.errors, page.errors
    assert all("401" in e for e in page.errors), page.errors

    page.errors.clear()
    page.fill("#admin-token", TOKEN)
    with page.expect_response(lambda r: r.url.endswith("/reanalyse")) as answer:
        page.click("#reanalyse")
    assert answer.value.status == 200
    page.wait_for_selector("#op-result .done")
    assert "Re-analysis queued for 1 run" in page.locator("#op-result").inner_text()
    assert page.errors == []


def test_the_pages_carry_the_security_policy_and_run_under_it(page, served):
    """Every page above ran with no console error under this policy (a refused inline script or
    style is a console error); the policy itself is on every answer."""
    response = page.request.get(served.base + "/ui/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    # The dashboard cannot be framed by another page.
    page.set_content(f'<iframe id="f" src="{served.base}/ui/"></iframe>')
    page.wait_for_timeout(1000)
    assert page.frame_locator("#f").locator("header.top").count() == 0
    page.errors.clear()


REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
"""The one outside address in ReDoc's bundle (a sidebar logo, unconditional): the policy refuses it."""


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".opblock"), ("/redoc", "[data-section-id]")])
def test_the_api_docs_render_from_local_files_only(page, served, path, ready):
    requested, failed = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(served.base + path)
    page.wait_for_selector(ready, timeout=60_000)
    assert page.locator(ready).count() >= 10
    assert "/predict" in page.content()
    page.wait_for_load_state("networkidle")
    outside = [u for u in requested if not (u.startswith(served.base) or u.startswith(("data:", "blob:")))]
    assert outside in ([], [REDOCLY_LOGO]), outside
    assert all(u in failed for u in outside)  # refused by the policy: nothing left the network
    assert [e for e in page.errors if REDOCLY_LOGO not in e] == []


def test_log_out_ends_the_session(page, served):
    page.goto(served.base + "/ui/studies")
    page.click("#logout")
    page.wait_for_url(served.base + "/ui/login")
    page.goto(served.base + "/ui/studies")
    assert page.url.endswith("/ui/login")
    assert page.request.get(served.base + "/results").status == 401
    assert page.errors == []
