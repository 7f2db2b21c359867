"""The command line, run as a user runs it (a separate process)."""

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "arcade_pacs.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_predict_json_one_object_per_file(rubo, tiny_model, tmp_path):
    from PIL import Image

    from tests.factory import real_frame

    png = tmp_path / "frame.png"
    Image.fromarray(real_frame(rubo, 50)).save(png)
    out = cli("predict", rubo, png, tmp_path / "missing.dcm", "--json", "--model", tiny_model)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(rubo), str(png), str(tmp_path / "missing.dcm")]
    assert {"diagnosis", "confidence", "raw_score", "is_abnormal", "tta_details"} <= lines[0].keys()
    assert len(lines[0]["keyframes"]) == 8
    assert lines[1]["keyframes"] == [1]
    assert "error" in lines[2]
    assert out.returncode == 1


def test_evaluate_json_is_the_only_thing_on_stdout(arcade_dir, tiny_model):
    out = cli("evaluate", "--data", arcade_dir, "--split", "val", "--limit", "3", "--model", tiny_model, "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("window_auc", "threshold", "image_sensitivity", "negative_window_fpr", "lesion_recall",
                "n_images", "n_positive_windows", "n_negative_windows", "model_version"):
        assert key in result
    assert result["n_images"] == 3
    assert result["model_version"] == "tiny-1"


def test_evaluate_names_a_missing_dataset(tmp_path, tiny_model):
    out = cli("evaluate", "--data", tmp_path, "--split", "test", "--model", tiny_model)
    assert out.returncode == 2
    assert "missing images folder" in out.stderr


def test_keyframes_plot(rubo, tmp_path):
    out = cli("keyframes", rubo, "--plot", tmp_path / "k.png")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["keyframes"]) == 8
    assert (tmp_path / "k.png").stat().st_size > 1000


def test_serve_with_a_missing_model_says_so(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npath = "{tmp_path}/none.keras"\n[storage]\nroot = "{tmp_path}/s"\n'
                   f'[database]\nurl = "sqlite:///{tmp_path}/a.db"\n')
    assert cli("--config", cfg, "db", "upgrade", timeout=120).returncode == 0  # else serve stops at the schema
    out = cli("--config", cfg, "serve", timeout=120)
    assert out.returncode == 2
    assert "model file not found" in out.stderr


def test_errors_are_one_line_unless_debug():
    out = cli("status", "--url", "http://127.0.0.1:1", timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("arcade-pacs status: error: cannot reach the admin API")
    assert "arcade-pacs serve" in lines[0]
    out = cli("status", "--url", "http://127.0.0.1:1", "--debug", timeout=60)
    assert out.returncode != 0
    assert "Traceback" in out.stderr


def test_an_invalid_setting_is_named_in_one_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[scp]\nport = 99999999\n")
    out = cli("--config", cfg, "status", timeout=60)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert "invalid configuration: scp.port" in out.stderr


def test_progress_lines_without_a_terminal(capsys):
    from arcade_pacs.cli import ProgressBar

    with ProgressBar("scored", 30, every=10) as bar:
        for done in range(1, 31):
            bar.update(done, note="images")
    assert capsys.readouterr().err.splitlines() == ["scored 10/30 images", "scored 20/30 images", "scored 30/30 images"]


def test_engine_command_shows_the_checked_form_of_a_model(tmp_path, tiny_model, data_dir, capsys):
    import json
    import shutil

    from arcade_pacs.cli import main
    from arcade_pacs.model.classifier import ModelInfo

    model = tmp_path / "tiny.keras"
    shutil.copy(tiny_model, model)
    shutil.copy(ModelInfo.sidecar(tiny_model), ModelInfo.sidecar(model))
    config = tmp_path / "c.toml"
    config.write_text(f"data_dir = \"{data_dir}\"\n[model]\ncheck_images = 2\n")
    assert main(["--config", str(config), "engine", "--model", str(model)]) == 1  # not built yet
    assert json.loads(capsys.readouterr().out.strip())["litert"] is None
    assert main(["--config", str(config), "engine", "--model", str(model), "--build"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["check"]["passed"]
    assert shown["check"]["images"] == 2
    assert shown["litert"] == str(model.with_suffix(".tflite"))
    assert shown["verified"] is True
    assert shown["golden"]["flips"] == 0  # verified as serving verifies it


def test_probe_port_is_for_the_roles_that_share_a_host():
    for role in ("admin", "all"):
        out = cli("serve", "--role", role, "--probe-port", "8001", timeout=120)
        assert out.returncode == 2, out.stderr
        assert "--probe-port is for the scp and worker roles" in out.stderr, out.stderr
    out = cli("serve", "--role", "scp", "--probe-port", "70000", timeout=120)
    assert out.returncode == 2
    assert "not a port" in out.stderr
