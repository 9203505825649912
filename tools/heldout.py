"""Held-out checks of candidate model pairs, side by side: the data no recipe or checkpoint was tuned on.

For each candidate (a folder holding ``detector.onnx`` and ``classifier.onnx`` listed in its ``SHA256SUMS``, as
``maskwatch export`` writes them) it runs, at fp32 on ONNX Runtime:

- ``tools/models_check.py --heldout``: the half of ``mask-crops`` that detector training never draws from (web
  photos of one face each): any face found, more than one box after the pipeline's nested-box suppression, and
  (reported, not in the mean: the classifier trains on every crop) the label of the face the detector cuts;
  the two real clips: the share of sampled frames labelled right (``mask.mp4`` masked, ``nomask.mp4`` unmasked);
- ``tools/closeups.py``: close-ups cut from the real clips (face found, second box);
- ``maskwatch eval-video`` on the rendered video benchmark, when ``--bench`` names it: IDF1 and label accuracy.

and prints one table with the mean of those scores (each in 0..1, higher is better). Selection uses that mean;
val is reported separately with ``maskwatch eval``.

    python tools/heldout.py --candidate v3=weights --candidate v4=runs/v4 [--bench bench-video] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from maskwatch.config import DetectorConfig

TOOLS = Path(__file__).resolve().parent
SCORES = (
    "crops_any_face",
    "crops_one_box",
    "clips_label",
    "closeup_found",
    "closeup_one_box",
    "bench_idf1",
    "bench_label",
)


def write_config(folder: Path, out: Path) -> Path:
    cfg = {
        "detector": {"onnx_weights": str((folder / "detector.onnx").resolve())},
        "classifier": {"onnx_weights": str((folder / "classifier.onnx").resolve())},
        "runtime": {"engine": "onnx", "precision": "fp32"},
    }
    out.write_text(yaml.safe_dump(cfg))
    return out


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed (exit {done.returncode}); see {log}")


def check(name: str, folder: Path, shared: Path, bench: Path | None, work: Path) -> dict:
    """Run every held-out check of one candidate; return its scores."""
    cfg = write_config(folder, work / f"{name}.yaml")
    det, cls = str(folder / "detector.onnx"), str(folder / "classifier.onnx")
    mc = work / f"{name}_models_check.json"
    run([sys.executable, str(TOOLS / "models_check.py"), "--shared", str(shared), "--heldout",
         "--detector", det, "--classifier", cls, "--json", str(mc)], work / f"{name}_models_check.log")  # fmt: skip
    report = json.loads(mc.read_text())
    rows = report["mask_crops"]
    clips = report["clips"]
    want = {"mask.mp4": 0, "nomask.mp4": 1}
    scores = {
        "crops_any_face": _mean(r[f"any_face {det}"] for r in rows.values()),
        "crops_one_box": 1 - _mean(r[f"multi_box_after_nested {det}"] for r in rows.values()),
        "crops_label": _mean(r[f"pipeline_accuracy {cls}"] for r in rows.values()),
        "clips_label": _mean(v["argmax_share"][want[k.split()[0]]] for k, v in clips.items() if k.split()[0] in want),
    }
    cu = work / f"{name}_closeups.json"
    videos = [str(p) for p in sorted((shared / "data" / "videos").glob("*.mp4"))]
    overlap = str(DetectorConfig().nested_overlap)  # what run does after the detector
    closeup = "0"  # tracked video does without the zoomed-out pass (maskwatch.wiring.build_monitor)
    cmd = [sys.executable, str(TOOLS / "closeups.py"), "--config", str(cfg), "--overlap", overlap, "--closeup", closeup]
    run([*cmd, "--videos", *videos, "--json", str(cu)], work / f"{name}_closeups.log")
    close = json.loads(cu.read_text())["video_closeups"]
    scores["closeup_found"] = close["face_found_after"]
    scores["closeup_one_box"] = 1 - close["multi_box_rate_after"]
    if bench is not None:
        ev = work / f"{name}_eval_video.json"
        run([sys.executable, "-m", "maskwatch", "eval-video", "--data", str(bench), "--config", str(cfg),
             "--json", str(ev)], work / f"{name}_eval_video.log")  # fmt: skip
        overall = json.loads(ev.read_text())
        scores["bench_idf1"] = overall["idf1"]
        scores["bench_label"] = overall["label_accuracy"]
    present = [scores[k] for k in SCORES if k in scores]
    scores["mean"] = round(sum(present) / len(present), 4)
    return {k: round(float(v), 4) for k, v in scores.items()}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / max(len(values), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidate", action="append", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--shared", type=Path, default=TOOLS.parents[1] / "shared")
    ap.add_argument("--bench", type=Path, help="the video benchmark folder (tools/make_video_bench.py)")
    ap.add_argument("--work", type=Path, default=Path("runs/heldout"), help="logs and per-check JSON files")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for spec in args.candidate:
        name, _, folder = spec.partition("=")
        results[name] = check(name, Path(folder), args.shared, args.bench, args.work)
    keys = [k for k in (*SCORES, "mean", "crops_label") if any(k in r for r in results.values())]
    print("| candidate | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
