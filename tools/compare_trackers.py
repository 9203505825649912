"""maskwatch's tracker against Roboflow's ``trackers`` library (SORT, ByteTrack, OC-SORT, BoT-SORT) on the
video benchmark, every tracker fed the same every-frame detections and scored by ``maskwatch eval-video``'s code.

1. ``detect`` (main venv): maskwatch's ONNX detector (``detector.onnx``, score >= 0.1, then the pipeline's
   nested-box suppression) on every frame of each clip that has truth boxes; boxes and scores cached in
   ``--cache/CLIP.npz``.
2. ``track`` (run by step 1 in a subprocess with ``--library-python``, the venv holding ``trackers``): each library
   tracker with its default parameters and the clip's ``frameRate``; output as ``--detections`` records
   (``--cache/tracks/TRACKER/CLIP.jsonl``). Detections the tracker leaves without an id (-1) are dropped.
   ``NAME@T`` (e.g. ``sort@0.5``) feeds that tracker only the detections scoring at least T.
3. Scoring (main venv): ``score_clip`` / ``mot_summary`` of ``maskwatch.commands.eval_video.score``, so IDF1, MOTA
   and ID switches match ``maskwatch eval-video``'s (IoU >= 0.5; static faces and hidden faces are ignore regions).
   maskwatch's own rows come from ``eval-video --json`` files given with ``--maskwatch LABEL=JSON``.

Usage::

    printf 'tracking:\\n  detect_every: 1\\n' > de1.yaml
    maskwatch eval-video --data bench-video --json mw4.json
    maskwatch eval-video --data bench-video --config de1.yaml --json mw1.json
    python3 -m venv trk && trk/bin/pip install trackers==2.6.1   # a separate venv: it pulls supervision, scipy
    python tools/compare_trackers.py --data bench-video --library-python trk/bin/python \\
        --maskwatch maskwatch_de4=mw4.json --maskwatch maskwatch_de1=mw1.json --json compare.json
"""

from __future__ import annotations

import argparse
import configparser
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LIBRARY_TRACKERS = ("sort", "bytetrack", "ocsort", "botsort")


def clips_with_boxes(data: Path) -> list[Path]:
    """The clip folders of ``data`` whose seqinfo.ini says they have truth boxes."""
    out = []
    for info in sorted(data.glob("*/seqinfo.ini")):
        parser = configparser.ConfigParser()
        parser.read(info)
        if parser["Sequence"].getboolean("boxes", fallback=True):
            out.append(info.parent)
    return out


def detect(data: Path, cache: Path, weights: str, threshold: float, nested: float) -> dict[str, float]:
    """Cache every frame's detections of every clip with boxes; seconds per clip (0 when already cached)."""
    import cv2

    from maskwatch.commands.eval_video.truth import read_clip
    from maskwatch.metrics import suppress_nested
    from maskwatch.models.onnx_engine import OnnxRetinaFaceDetector

    cache.mkdir(parents=True, exist_ok=True)
    detector, seconds = None, {}
    for folder in clips_with_boxes(data):
        truth = read_clip(folder)
        path = cache / f"{truth.name}.npz"
        if path.is_file():
            seconds[truth.name] = 0.0
            continue
        detector = detector or OnnxRetinaFaceDetector(weights, score_threshold=threshold)
        t0 = time.perf_counter()
        cap = cv2.VideoCapture(str(truth.video))
        frames, boxes, scores = [], [], []
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            found = detector.detect(image)
            keep = suppress_nested(found.xyxy, found.det_score, nested) if nested > 0 and len(found) > 1 else None
            xyxy, score = (found.xyxy, found.det_score) if keep is None else (found.xyxy[keep], found.det_score[keep])
            frames.append(np.full(len(xyxy), index, np.int32))
            boxes.append(xyxy.reshape(-1, 4))
            scores.append(score)
            index += 1
        cap.release()
        np.savez(
            path,
            frame=np.concatenate(frames),
            xyxy=np.concatenate(boxes).astype(np.float32),
            score=np.concatenate(scores).astype(np.float32),
            frames=index,
            fps=truth.fps,
            video=str(truth.video),
        )
        seconds[truth.name] = round(time.perf_counter() - t0, 1)
        print(f"detect {truth.name}: {index} frames in {seconds[truth.name]} s", file=sys.stderr)
    return seconds


def track(cache: Path, names: list[str]) -> dict[str, dict[str, float]]:
    """Library-venv step: run each tracker on each cached clip; writes JSONL records; seconds per tracker/clip."""
    import cv2
    import supervision as sv
    import trackers

    classes = {
        "sort": trackers.SORTTracker,
        "bytetrack": trackers.ByteTrackTracker,
        "ocsort": trackers.OCSORTTracker,
        "botsort": trackers.BoTSORTTracker,
    }
    seconds: dict[str, dict[str, float]] = {}
    for npz in sorted(cache.glob("*.npz")):
        cached = np.load(npz)
        frame_of, xyxy, score = cached["frame"], cached["xyxy"], cached["score"]
        fps, count = float(cached["fps"]), int(cached["frames"])
        for name in names:
            kind, _, floor = name.partition("@")  # "sort@0.5": SORT fed only the detections scoring >= 0.5
            tracker = classes[kind](frame_rate=fps)
            needs_frame = kind == "botsort"  # camera motion compensation reads the image; the others warn on one
            cap = cv2.VideoCapture(str(cached["video"])) if needs_frame else None
            out = cache / "tracks" / name
            out.mkdir(parents=True, exist_ok=True)
            t0, records = time.perf_counter(), []
            for index in range(count):
                image = cap.read()[1] if cap is not None else None
                sel = (frame_of == index) & (score >= float(floor or 0))
                dets = sv.Detections(
                    xyxy=xyxy[sel].astype(np.float32).reshape(-1, 4),
                    confidence=score[sel].astype(np.float32),
                    class_id=np.zeros(int(sel.sum()), int),
                )
                result = tracker.update(dets, image) if needs_frame else tracker.update(dets)
                faces = [
                    {"box": [round(float(v), 2) for v in box], "track_id": int(tid), "label": None}
                    for box, tid in zip(result.xyxy, result.tracker_id, strict=True)
                    if tid >= 0
                ]
                records.append({"frame": index, "faces": faces})
            if cap is not None:
                cap.release()
            seconds.setdefault(name, {})[npz.stem] = round(time.perf_counter() - t0, 2)
            (out / f"{npz.stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return seconds


def score(data: Path, cache: Path, names: list[str]) -> dict[str, dict]:
    """Score each library tracker's records with eval-video's code: overall and per clip IDF1, MOTA, ID switches."""
    from maskwatch.commands.eval_video.score import mot_summary, score_clip
    from maskwatch.commands.eval_video.truth import read_clip

    truths = [read_clip(folder) for folder in clips_with_boxes(data)]
    results = {}
    for name in names:
        scored = []
        for truth in truths:
            lines = (cache / "tracks" / name / f"{truth.name}.jsonl").read_text().splitlines()
            scored.append(score_clip(truth, [json.loads(line) for line in lines], []))
        table = mot_summary([s.accumulator for s in scored], [s.name for s in scored])
        results[name] = {**table.pop("OVERALL"), "clips": table}
    return results


def from_eval_json(path: Path) -> dict:
    """The MOT part of a ``maskwatch eval-video --json`` file (clips with boxes only)."""
    result = json.loads(path.read_text())
    keys = ("idf1", "mota", "id_switches")
    clips = {n: {k: c[k] for k in keys} for n, c in result["clips"].items() if c.get("boxes")}
    return {**{k: result[k] for k in keys}, "clips": clips, "settings": result.get("settings", {}).get("tracking")}


def table(results: dict[str, dict]) -> list[str]:
    """Rows: trackers; columns: overall IDF1, MOTA, ID switches, then each clip's IDF1."""
    clips = sorted({c for r in results.values() for c in r["clips"]})
    heads = ["tracker", "IDF1", "MOTA", "IDsw", *(c.split("_")[0] + " IDF1" for c in clips)]

    def cell(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    rows = [
        [n, cell(r["idf1"]), cell(r["mota"]), cell(r["id_switches"]), *(cell(r["clips"][c]["idf1"]) for c in clips)]
        for n, r in results.items()
    ]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    return [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [heads, *rows]
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("bench-video"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/maskwatch_compare_trackers"))
    ap.add_argument("--weights", default=str(Path(__file__).resolve().parent.parent / "weights" / "detector.onnx"))
    ap.add_argument("--score-threshold", type=float, default=0.1)
    ap.add_argument("--nested", type=float, default=0.6, help="detector.nested_overlap of the pipeline (0: off)")
    ap.add_argument("--trackers", default=",".join(LIBRARY_TRACKERS))
    ap.add_argument("--library-python", help="python of the venv with `trackers` installed (default: this one)")
    ap.add_argument("--maskwatch", action="append", default=[], metavar="LABEL=JSON", help="eval-video --json file")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--mode", choices=["all", "track"], default="all", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = [n for n in args.trackers.split(",") if n]
    if args.mode == "track":
        print(json.dumps(track(args.cache, names)))
        return 0
    t0 = time.perf_counter()
    detect_s = detect(args.data, args.cache, args.weights, args.score_threshold, args.nested)
    python = args.library_python or sys.executable
    cmd = [python, __file__, "--mode", "track", "--cache", str(args.cache), "--trackers", ",".join(names)]
    track_s = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    results = {}
    for spec in args.maskwatch:
        label, path = spec.split("=", 1)
        results[label] = from_eval_json(Path(path))
    results.update(score(args.data, args.cache, names))
    print("\n".join(table(results)))
    if args.json:
        extra = {"detect_s": detect_s, "track_s": track_s, "wall_s": round(time.perf_counter() - t0, 1)}
        args.json.write_text(json.dumps({"results": results, **extra}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
