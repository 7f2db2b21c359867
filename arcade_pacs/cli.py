"""``arcade-pacs``: serve, predict, train, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("arcade_pacs")


def _logging(verbose: bool = False) -> None:
    """Log to stderr without patient data.

    pydicom and highdicom warn about odd values of incoming data sets and quote the values
    (a patient's name, say); those warnings are silenced so they never reach a log.
    """
    import warnings

    for module in ("pydicom", "highdicom"):
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def cmd_serve(args) -> int:
    from arcade_pacs.service import Service
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    Service(settings).serve_forever()
    return 0


def cmd_predict(args) -> int:
    from arcade_pacs.model.classifier import Classifier
    from arcade_pacs.pipeline.frames import FrameError
    from arcade_pacs.pipeline.predict import predict_bytes
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    classifier = Classifier.load(args.model or settings.model.path)
    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            body = predict_bytes(
                path.read_bytes(), classifier.predict, classifier.info.threshold,
                settings.pipeline.keyframes, settings.pipeline.max_frames,
            )
            body = {"file": str(path)} | body | {"model_version": classifier.info.version}
        except (OSError, FrameError) as exc:
            failed += 1
            body = {"file": str(path), "error": str(exc)}
        if args.json:
            print(json.dumps(body), flush=True)
        else:
            print(
                f"{path}: {body.get('diagnosis', 'error')} "
                + (f"p={body['raw_score']:.3f} (threshold {body['threshold']:.3f})" if "raw_score" in body else body["error"]),
                flush=True,
            )
    return 1 if failed else 0


def cmd_train(args) -> int:
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.data import DatasetError
    from arcade_pacs.training.retrain import retrain
    from arcade_pacs.training.train import TrainConfig, train

    settings = load_settings(args.config)
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
        limit_train=args.limit_train,
        limit_val=args.limit_val,
        resume=args.resume,
    )
    show = lambda p: print(p.line(), flush=True)  # noqa: E731
    try:
        if args.promote:
            outcome = retrain(cfg, settings.model.path, progress=show)
            info = outcome.candidate_info
        else:
            info = train(cfg, progress=show)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {"model": str(cfg.out), "version": info.version, "threshold": info.threshold,
               "val": info.metrics.get("val", {})}
    if args.promote:
        summary |= {"promoted": outcome.promoted, "serving_val_auc": outcome.serving_val_auc}
    print(json.dumps(summary, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from arcade_pacs.model.classifier import Classifier
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.data import DatasetError, load_split
    from arcade_pacs.training.evaluate import metrics, plot_roc, score_split

    settings = load_settings(args.config)
    data = Path(args.data) if args.data else settings.data_dir / "arcade"
    try:
        split = load_split(data, args.split, args.limit)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classifier = Classifier.load(args.model or settings.model.path)

    def progress(done, total):
        if not args.json and (done % 25 == 0 or done == total):
            print(f"scored {done}/{total} images", file=sys.stderr, flush=True)

    scores = score_split(classifier.predict, split, tta=True, progress=progress)
    result = metrics(scores, classifier.info.threshold) | {
        "split": args.split,
        "model_version": classifier.info.version,
    }
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
    from arcade_pacs.model import engine as engines
    from arcade_pacs.model.classifier import ModelInfo
    from arcade_pacs.settings import load_settings

    settings = load_settings(args.config)
    path = Path(args.model or settings.model.path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    built = engines.cached(path)
    if built is None and args.build:
        m = settings.model
        built = engines.build(path, ModelInfo.read(path).threshold,
                              settings.data_dir / "arcade" / "stenosis" / "val" / "images",
                              threads=m.threads, batch_size=m.batch_size, check_images=m.check_images or None)
    if built is None:
        print(json.dumps({"model": str(path), "digest": engines.model_digest(path), "litert": None,
                          "hint": "arcade-pacs engine --build (or let `serve` build it in the background)"}))
        return 1
    print(json.dumps({"model": str(path), "litert": str(built.tflite)} | built.manifest, indent=2))
    return 0 if built.check_passed else 1


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


def cmd_card(args) -> int:
    from arcade_pacs.settings import load_settings
    from arcade_pacs.training.card import render

    model = Path(args.model or load_settings(args.config).model.path)
    out = Path(args.out) if args.out else model.parent / "MODEL_CARD.md"
    out.write_text(render(model))
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arcade-pacs", description=__doc__)
    parser.add_argument("--config", help="config TOML (default: ARCADE_CONFIG or config/arcade.toml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the SCP, the worker and the admin API")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("predict", help="classify DICOM/PNG/JPEG files")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--model", help="model file (default: the configured one)")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_predict)

    from arcade_pacs.training.train import TrainConfig as T  # the one source of training defaults

    p = sub.add_parser("train", help="train a candidate model on ARCADE")
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--out", default="models/candidate/arcade_effb0.keras")
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
    p.add_argument("--imagenet-weights", help="local Keras EfficientNetB0 no-top weights file")
    p.add_argument("--limit-train", type=int)
    p.add_argument("--limit-val", type=int)
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--promote", action="store_true",
                   help="replace the serving model if the candidate's val AUC is at least its own")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="the fixed evaluation protocol on an ARCADE split")
    p.add_argument("--data", help="ARCADE folder (default: <data_dir>/arcade)")
    p.add_argument("--split", default="test")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p.add_argument("--roc", help="write the ROC curve PNG here")
    p.add_argument("--limit", type=int, help="first N images only (smoke tests)")
    p.add_argument("--out", help="also write the JSON result to this file (the model card reads it)")
    p.add_argument("--failures", metavar="DIR",
                   help="draw the worst missed stenoses and false alarms (PNG contact sheets) into DIR")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="measure everything (engine, end to end, ingest, HTTP, memory); "
                                     "'bench cine': one long cine's memory and time")
    p.add_argument("what", nargs="?", choices=["cine"], help="cine: one long, large cine run only")
    p.add_argument("--quick", action="store_true", help="fewer repetitions: a smoke run under 2 minutes")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--bits", type=int, default=12)
    p.add_argument("--model")
    p.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("engine", help="show (or --build) the checked LiteRT form of the model")
    p.add_argument("--build", action="store_true", help="convert and check it now if it is missing or stale")
    p.add_argument("--model")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("card", help="write models/MODEL_CARD.md from the model's measurements")
    p.add_argument("--model")
    p.add_argument("--out")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("keyframes", help="show which frames of a cine are classified, and why")
    p.add_argument("file")
    p.add_argument("-k", type=int, help="number of keyframes (default: pipeline.keyframes)")
    p.add_argument("--plot", help="write the opacification curve with the keyframes marked (PNG)")
    p.add_argument("--config", default=argparse.SUPPRESS)
    p.set_defaults(func=cmd_keyframes)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    try:
        return args.func(args)
    except (FileNotFoundError, ValidationError, OSError) as exc:
        # A missing model or config, an invalid setting, a port in use: say it in one line.
        print(f"arcade-pacs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
