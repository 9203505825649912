"""The ``maskwatch`` command line. User errors print one line and exit non-zero; bugs keep their traceback."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from loguru import logger

from maskwatch import __version__
from maskwatch.commands import erase, report
from maskwatch.commands.bench import history as bench_history
from maskwatch.commands.train import DEFAULT_EPOCHS, default_split
from maskwatch.errors import MaskwatchError, require
from maskwatch.media import EXIT_ERROR, EXIT_OK, EXIT_SIGNAL

ENGINES = ["auto", "onnx", "torch"]
ENGINE_HELP = (
    "what runs the models: onnx (ONNX Runtime, CPU), torch (fp32 .pt files, cpu or cuda; pip install "
    "'maskwatch[train]'), auto (onnx on the CPU, torch on cuda); default from config: auto"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskwatch", description="Watch a camera or video and show who wears a mask.")
    parser.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    parser.add_argument("--log-level", default=None, help="log level (default from config: INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (_add_run, _add_eval, _add_eval_video, _add_train, _add_quantize, _add_bench, _add_export, _add_soak)
    for add in (*commands, report.add_parser, erase.add_parser, _add_batch):
        add(sub)
    return parser


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="detect and classify faces in a camera, stream, video, image or folder")
    run.add_argument(
        "--source",
        help="camera index (0), rtsp:// or http:// URL, video, image or folder, or 'demo' (a 5 s clip shipped "
        "with maskwatch) (default: every source in the config's sources: list, served together)",
    )
    run.add_argument(
        "--output",
        type=Path,
        help="annotated video (video input), image / folder (image input), folder (several sources: NAME.mp4 each)",
    )
    run.add_argument("--show", action="store_true", help="show the annotated frames in a window (q quits)")
    run.add_argument("--detections", type=Path, help="write per-frame detections as JSON lines to this file")
    run.add_argument("--config", type=Path, help="YAML config (default: built-in defaults, see configs/default.yaml)")
    run.add_argument("--device", choices=["cpu", "cuda"], help="where the models run (default from config: cpu)")
    run.add_argument("--precision", choices=["int8", "fp32"], help="model precision (default from config)")
    run.add_argument("--engine", choices=ENGINES, help=ENGINE_HELP)
    run.add_argument(
        "--realtime", action="store_true", help="play a video file at its own fps like a live camera (drops frames)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--events", type=Path, help="append alert / update / end events as JSON lines to this file")
    run.add_argument("--snapshots", action="store_true", help="save a face snapshot with each alert (off by default)")
    run.add_argument("--webhook", metavar="URL", help="POST each event as JSON to URL (retried, never blocks)")
    run.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish events, state and Home Assistant discovery to mqtt://[user:pass@]host:port[/prefix]",
    )
    run.add_argument(
        "--zone",
        metavar="POINTS",
        help='one watch zone, "x1,y1 x2,y2 x3,y3 ..." as fractions of the frame: only faces in it count and alert',
    )
    run.add_argument("--history", type=Path, metavar="PATH", help="keep people and events in this SQLite history")
    run.add_argument("--clips", type=Path, metavar="DIR", help="write an mp4 around each alert into DIR")
    run.add_argument(
        "--notify", action="append", metavar="URL", help="send each alert to this Apprise URL (repeatable)"
    )
    run.add_argument("--http", metavar="HOST:PORT", help="serve the remote view: MJPEG, status page, /events, /metrics")
    run.add_argument("--http-token", help="token the remote view requires (default $MASKWATCH_HTTP_TOKEN)")
    run.add_argument("--blur-faces", action="store_true", help="blur every face in outputs, the stream and snapshots")
    run.add_argument(
        "--report",
        type=Path,
        metavar="PREFIX",
        help="report files PREFIX.report.json/.md, PREFIX.compliance.png (default: next to --output or --events)",
    )
    run.add_argument("--detect-every", type=int, metavar="N", help="run the detector on every Nth frame, track between")
    run.add_argument("--no-track", action="store_true", help="no tracking: per-frame labels, no events or report")
    run.set_defaults(func=cmd_run)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="score the full pipeline on a labelled dataset (VOC, YOLO or COCO)")
    ev.add_argument("--data", required=True, type=Path, help="dataset folder (or a COCO .json)")
    ev.add_argument("--split", type=Path, help="file of image stems to evaluate (one per line)")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU needed to match a ground-truth face (default 0.5)")
    ev.add_argument("--json", type=Path, help="write the scores as JSON")
    ev.add_argument("--plots", type=Path, help="folder for PR-curve and confusion-matrix PNGs")
    ev.add_argument(
        "--score-threshold",
        type=float,
        default=0.05,
        help="detector score threshold while evaluating (low, so the PR curve is complete; default 0.05)",
    )
    ev.add_argument("--config", type=Path, help="YAML config (models, thresholds)")
    ev.add_argument("--device", choices=["cpu", "cuda"])
    ev.add_argument("--precision", choices=["int8", "fp32"])
    ev.add_argument("--engine", choices=ENGINES, help=ENGINE_HELP)
    ev.set_defaults(func=cmd_eval)


def _add_eval_video(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval-video", help="score tracking, per-person labels and alerts on a video benchmark")
    ev.add_argument("--data", required=True, type=Path, help="benchmark folder (clips with seqinfo.ini + gt/)")
    ev.add_argument("--json", type=Path, help="write the scores as JSON")
    ev.add_argument("--keep", type=Path, metavar="DIR", help="also write each clip's detections and events here")
    ev.add_argument("--config", type=Path, help="YAML config (models, tracking, alerts)")
    ev.add_argument("--device", choices=["cpu", "cuda"])
    ev.add_argument("--precision", choices=["int8", "fp32"])
    ev.add_argument("--engine", choices=ENGINES, help=ENGINE_HELP)
    ev.set_defaults(func=cmd_eval_video)


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train the face detector or the mask classifier")
    tr.add_argument("model", choices=["detector", "classifier"])
    tr.add_argument("--data", required=True, type=Path, help="Pascal VOC folder (images/ + annotations/)")
    tr.add_argument("--split", type=Path, help="training stems (default: DATA/splits/train.txt if present)")
    tr.add_argument("--val-split", type=Path, help="validation stems (default: DATA/splits/val.txt if present)")
    tr.add_argument("--epochs", type=int, help="epochs (default: the shipped model's setting)")
    tr.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    tr.add_argument("--out", type=Path, help="model file to write (default: weights/detector.pt or classifier.pt)")
    tr.add_argument("--resume", type=Path, help="checkpoint to resume from")
    tr.add_argument("--crops", type=Path, help="classifier: extra folder of face crops (with_mask/, without_mask/)")
    tr.add_argument(
        "--init",
        type=Path,
        help="pretrained weights to start from: the detector needs them (e.g. WIDER FACE "
        "retinaface_mobilenet0.25.pth); the classifier's ImageNet backbone (mobilenetv1_x0.25_imagenet.tar) is "
        "optional (random init without it)",
    )
    tr.add_argument(
        "--pseudo",
        type=Path,
        nargs="+",
        help="detector: files of a teacher's pseudo-labels (tools/pseudo_label.py): extra faces and photos, ignores",
    )
    tr.add_argument(
        "--backbone",
        default="mobilenet",
        choices=["mobilenet", "efficientnet_lite0"],
        help="classifier: mobilenet (the shipped, real-time one) or efficientnet_lite0 (a teacher for --teacher)",
    )
    tr.add_argument("--teacher", type=Path, help="classifier: an efficientnet_lite0 model file to distil from")
    tr.add_argument(
        "--mine-with",
        type=Path,
        help="classifier: RetinaFace model file that cuts training faces and finds false alarms "
        "(default weights/detector.pt when present)",
    )
    tr.add_argument(
        "--arch", default="retinaface_mnet025", choices=list(DEFAULT_EPOCHS)[1:], help="detector architecture"
    )
    tr.add_argument(
        "--preset", default="default", help="augmentation preset (maskwatch/train/presets.py; a wrong name lists them)"
    )
    tr.set_defaults(func=cmd_train)


def _add_quantize(sub: argparse._SubParsersAction) -> None:
    qu = sub.add_parser("quantize", help="make the int8 ONNX models from the fp32 ones (static QDQ, calibrated)")
    qu.add_argument("--calib", type=int, default=64, help="calibration images from the training split (default 64)")
    qu.add_argument(
        "--out", type=Path, help="folder for detector_int8.onnx and classifier_int8.onnx (default weights/)"
    )
    qu.add_argument("--data", required=True, type=Path, help="Pascal VOC folder to calibrate on")
    qu.add_argument("--split", type=Path, help="stems to calibrate on (default DATA/splits/train.txt)")
    qu.add_argument(
        "--detector", default="detector.onnx", help="fp32 detector: .onnx file, or .pt model file exported first"
    )
    qu.add_argument("--classifier", default="classifier.onnx", help="fp32 classifier: .onnx or .pt model file")
    qu.set_defaults(func=cmd_quantize)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    be = sub.add_parser("bench", help="measure fp32 vs int8 speed and size, end-to-end fps, and the seed model")
    be.add_argument("--video", type=Path, help="video to time on, resized to 640x480 (default: the demo clip)")
    be.add_argument("--frames", type=int, default=150, help="frames per pipeline run (default 150)")
    be.add_argument("--json", type=Path, help="write the results as JSON")
    be.add_argument(
        "--repeats",
        type=int,
        help="pipeline runs per precision, interleaved (default 3; door: pairs of runs per comparison, 5)",
    )
    be.add_argument("--runs", type=int, default=50, help="timed calls per model and precision (default 50)")
    be.add_argument("--batch", type=int, default=4, help="classifier batch of the pipeline (faces; default 4)")
    be.add_argument("--seed-runs", type=int, default=3, help="Faster R-CNN timed calls; 0 skips it (default 3)")
    be.add_argument("--config", type=Path, help="YAML config (model files, threads)")
    be.add_argument("--engine", choices=ENGINES, help="onnx: also time the ONNX Runtime engine; --stages runs it")
    be.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        help="time the fp32 models on this device at batch 1..16, 640x480 and 1280x720, against CPU decode/encode",
    )
    be.add_argument(
        "--stages",
        action="store_true",
        help="only time decode / inference / render / encode per frame of --video at its own size, 1 thread",
    )
    be.add_argument(
        "--only",
        action="append",
        metavar="VARIANT",
        help="door: only the comparisons of this variant (repeatable; e.g. all, clips, 'all but clips')",
    )
    bench_history.add_flags(be)  # maskwatch bench history --days N
    be.set_defaults(func=cmd_bench)


def _add_export(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="export both fp32 models to ONNX (with a models.json describing them)")
    ex.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    ex.add_argument("--out", type=Path, default=Path("export"), help="output folder (default ./export)")
    ex.add_argument("--config", type=Path, help="YAML config (model files)")
    ex.set_defaults(func=cmd_export)


def _add_soak(sub: argparse._SubParsersAction) -> None:
    so = sub.add_parser("soak", help="loop a video through the full pipeline for N minutes; watch memory, threads, fps")
    so.add_argument("--minutes", type=float, required=True, help="how long to run (e.g. 10, or 0.5 for 30 s)")
    so.add_argument("--video", type=Path, help="video to loop (default: the demo clip)")
    so.add_argument("--out", type=Path, default=Path("soak"), help="folder for soak.json, soak.png and the logs")
    so.add_argument("--interval-s", type=float, default=5.0, help="seconds between samples (default 5)")
    so.add_argument("--warmup-s", type=float, default=60.0, help="seconds left out of the verdicts (default 60)")
    so.add_argument("--config", type=Path, help="YAML config (models, tracking, alerts)")
    so.set_defaults(func=cmd_soak)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    ba = sub.add_parser("batch", help="annotate many videos on Ray (local by default): one task per video, resumable")
    ba.add_argument("--inputs", required=True, help="glob of videos ('videos/*.mp4') or a .txt file, one per line")
    ba.add_argument(
        "--out", required=True, type=Path, help="output folder (annotated video, detections, events, report)"
    )
    ba.add_argument("--address", help="Ray cluster to join (auto, ray://HOST:PORT); default: start a local Ray")
    ba.add_argument("--workers", type=int, help="local Ray CPUs = videos in parallel (default: all cores)")
    ba.add_argument("--retries", type=int, default=1, help="retries of a failed video (default 1)")
    ba.add_argument("--config", type=Path, help="YAML config for every run")
    ba.add_argument("--precision", choices=["int8", "fp32"], help="model precision (default from config)")
    ba.add_argument(
        "--chunk-s",
        type=float,
        default=300.0,
        help="split videos longer than this many seconds into chunks run in parallel (default 300; 0: never)",
    )
    ba.add_argument(
        "--overlap-s", type=float, default=2.0, help="tracker warm-up before each chunk, in seconds (default 2)"
    )
    ba.set_defaults(func=cmd_batch)


def _setup_logging(level: str) -> None:
    logger.remove()
    if sys.stderr is None:  # started with stderr closed (2>&-): log to stdout, else nowhere, and still run
        sys.stderr = sys.stdout or open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    logger.add(sys.stderr, level=level, format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}")


def cmd_run(args: argparse.Namespace) -> int:
    from maskwatch.commands.run import run_command

    if args.detect_every is not None:
        _positive(args.detect_every, "--detect-every")
    return run_command(args, _setup_logging)


def cmd_eval(args: argparse.Namespace) -> int:
    from maskwatch.commands.evaluate import eval_command

    return eval_command(args)


def cmd_eval_video(args: argparse.Namespace) -> int:
    from maskwatch.commands.eval_video.run import eval_video_command

    return eval_video_command(args)


def cmd_train(args: argparse.Namespace) -> int:
    from maskwatch.commands.train import train_command

    return train_command(args)


def _positive(value: int, flag: str, minimum: int = 1) -> int:
    if value < minimum:
        raise MaskwatchError(f"{flag} must be at least {minimum}, got {value}")
    return value


def cmd_quantize(args: argparse.Namespace) -> int:
    from maskwatch.commands.quantize import quantize_files
    from maskwatch.models.manifest import WEIGHTS_DIRS

    _positive(args.calib, "--calib")
    split = args.split or default_split(args.data, "train.txt")
    out = args.out or WEIGHTS_DIRS[0]
    paths = quantize_files(
        args.data, split, out, n_images=args.calib, detector_weights=args.detector, classifier_weights=args.classifier
    )
    for path in paths.values():
        logger.info(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from maskwatch.commands.bench.command import bench_command

    if args.repeats is None:
        args.repeats = 5 if args.what == "door" else 3
    for value, flag in ((args.frames, "--frames"), (args.repeats, "--repeats"), (args.runs, "--runs")):
        _positive(value, flag)
    _positive(args.batch, "--batch")
    _positive(args.seed_runs, "--seed-runs", 0)
    return bench_command(args)


def cmd_export(args: argparse.Namespace) -> int:
    from maskwatch.commands.export import export_all
    from maskwatch.config import load_config
    from maskwatch.wiring import model_files

    files = model_files(load_config(args.config, {}))
    for path in export_all(args.out, files["detector"]["fp32"], files["classifier"]["fp32"]):
        logger.info(f"wrote {path}")
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from maskwatch.commands.batch.jobs import run_batch
    from maskwatch.commands.batch.summary import summary_lines
    from maskwatch.config import load_config

    _positive(args.retries, "--retries", 0)
    if args.workers is not None:
        _positive(args.workers, "--workers")
    if args.chunk_s < 0 or args.overlap_s < 0:
        raise MaskwatchError("--chunk-s and --overlap-s must be 0 or more")
    load_config(args.config)  # a bad config fails here, once, not in every task
    table = run_batch(
        args.inputs,
        args.out,
        address=args.address,
        workers=args.workers,
        retries=args.retries,
        config=args.config,
        precision=args.precision,
        chunk_s=args.chunk_s,
        overlap_s=args.overlap_s,
    )
    for line in summary_lines(table):
        print(line)
    return EXIT_ERROR if any(r.status == "failed" for r in table) else EXIT_OK


def cmd_soak(args: argparse.Namespace) -> int:
    from maskwatch.commands.soak import failures, report_lines, resolve_video, run_builder, soak, validate
    from maskwatch.config import load_config
    from maskwatch.wiring import run_settings

    validate(args.minutes, args.interval_s, args.warmup_s)
    require("matplotlib")  # the plot is written at the end: say so before the soak, not after it
    video = resolve_video(args.video)
    cfg = load_config(args.config, {})
    result = soak(
        video,
        args.minutes,
        args.out,
        build=run_builder(cfg),
        interval_s=args.interval_s,
        warmup_s=args.warmup_s,
        queue_size=run_settings(cfg)["queue_size"],
    )
    for line in report_lines(result):
        print(line)
    logger.info(f"wrote {args.out / 'soak.json'} and {args.out / 'soak.png'}")
    problems = failures(result["summary"])
    if problems:
        logger.error("soak: " + "; ".join(problems))
        return EXIT_ERROR
    return EXIT_OK


_TRAIN_HINT = "pip install 'maskwatch[train]' (torch and torchvision: training, export, the torch engine)"
_EXTRAS = {
    "torch": _TRAIN_HINT,
    "torchvision": _TRAIN_HINT,
    "onnx": "pip install 'maskwatch[train]' (onnx: export and quantize)",
    "matplotlib": "pip install 'maskwatch[train]' (matplotlib: the plots of eval --plots and soak)",
    "ray": "pip install 'maskwatch[ray]'",
    "imageio_ffmpeg": "pip install 'maskwatch[ray]' (imageio-ffmpeg)",
    "paho": "pip install 'maskwatch[mqtt]' (paho-mqtt: --mqtt)",
}
"""Optional packages by import name, and how to install them."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging((args.log_level or "INFO").upper())
    try:
        return args.func(args)
    except MaskwatchError as exc:
        logger.error(str(exc))
        return exc.exit_status
    except ModuleNotFoundError as exc:  # an optional dependency this command needs is not installed
        hint = _EXTRAS.get((exc.name or "").split(".")[0])
        if hint is None:
            raise
        logger.error(f"maskwatch {args.command} needs the '{exc.name}' package, which is not installed: {hint}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        logger.error("aborted")
        return EXIT_SIGNAL[signal.SIGINT]
