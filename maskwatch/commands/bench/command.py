"""``maskwatch bench``: check the arguments, run the chosen measurement, print it and write its JSON."""

from __future__ import annotations

import argparse

from maskwatch.commands.options import emit
from maskwatch.errors import MaskwatchError


def bench_command(args: argparse.Namespace) -> int:
    """``maskwatch bench``: the device figures (``--device``), the stage costs (``--stages``) or the whole bench."""

    from maskwatch.commands.bench.core import report_lines, run_bench
    from maskwatch.config import load_config
    from maskwatch.outputs.sinks import check_writable

    if args.what == "history":
        from maskwatch.commands.bench.history import history_command

        return history_command(args)
    if args.what == "door":
        from maskwatch.commands.bench.door import door_command

        return door_command(args)
    if args.video is not None and not args.video.is_file():
        raise MaskwatchError(f"--video {args.video} does not exist")
    if args.json is not None:
        check_writable(args.json)
    cfg = load_config(args.config, {"runtime.engine": args.engine})
    video = args.video
    if video is None:
        from maskwatch.demo import demo_folder

        demo = demo_folder() / "demo.mp4"  # the clip shipped in the package
        video = demo if demo.is_file() else None
    if args.device is not None and args.engine == "onnx":
        raise MaskwatchError("--device times the torch models on a device; --engine onnx runs on the CPU")
    if args.device is not None:
        from maskwatch.commands.bench.device import device_bench, device_lines
        from maskwatch.wiring import check_runtime, with_runtime

        check_runtime(with_runtime(cfg, device=args.device))
        result = device_bench(cfg, video, device=args.device, frames=args.frames, runs=args.runs, repeats=args.repeats)
        return emit(device_lines(result), result, args.json)
    if args.stages:
        from maskwatch.commands.bench.stages import stage_costs, stage_lines

        if video is None:
            raise MaskwatchError("--stages needs a --video")
        result = stage_costs(cfg, video, frames=args.frames)
        return emit(stage_lines(result), result, args.json)
    result = run_bench(
        cfg,
        video,
        frames=args.frames,
        repeats=args.repeats,
        latency_runs=args.runs,
        batch=args.batch,
        seed_runs=args.seed_runs,
        config_path=args.config,
    )
    return emit(report_lines(result), result, args.json)
