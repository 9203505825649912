"""Run the pipeline on fixed frames and write its raw outputs as JSON; compare two such files.

Used by ``tools/pi/emulate_aarch64.sh`` to check that the models give the same answers on aarch64 (ONNX Runtime
under qemu, as on a Raspberry Pi) as on x86 (ONNX Runtime natively):

    python tools/pi/compare_arch.py --engine onnx --precision int8 --video clip.mp4 --frames 20 --images imgdir \
        --out arch_x86.json
    python tools/pi/compare_arch.py --compare arch_x86.json arch_aarch64.json

``--engine onnx`` (the default) never imports torch; ``--engine torch`` runs the .pt files (``--qengine`` forces
torch's quantized engine, e.g. qnnpack on x86). The JSON records what actually ran: engine, precision the models
report, the model files, onnxruntime's version and providers (or torch's version and quantized engine).

Faces are matched per frame greedily by IoU (best pairs first, IoU >= 0.5 to count as the same face). The
tolerance (``--max-*`` flags) is checked on faces both runs find with a det score safely above the detector
threshold (``--margin``); faces near the threshold may legitimately appear in one run only and are reported apart.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def frames_from(video: str | None, n: int, images: str | None):
    import cv2

    if video:
        cap = cv2.VideoCapture(video)
        k = 0
        while k < n:
            ok, image = cap.read()
            if not ok:
                break
            yield f"{Path(video).name}#{k}", image
            k += 1
        cap.release()
    if images:
        for path in sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            image = cv2.imread(str(path))
            if image is not None:
                yield path.name, image


def model_file(model) -> str | None:
    """The file a loaded model came from, as far as it tells (an ONNX Runtime session knows its path), with the
    start of its sha256: two records compare the same models only if these agree."""
    import hashlib

    session = getattr(model, "session", None)
    path = getattr(session, "_model_path", None) if session is not None else None
    if not path:
        return None
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name}@{digest}"


def runtime_info(engine: str) -> dict:
    """Versions of what runs the models; torch only when it is the engine (the onnx path must not import it)."""
    if engine == "onnx":
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    import torch

    return {
        "torch": torch.__version__,
        "qengine": torch.backends.quantized.engine,
        "supported_qengines": list(torch.backends.quantized.supported_engines),
    }


def record(args) -> int:
    from maskwatch.config import load_config
    from maskwatch.types import CLASS_NAMES, Frame
    from maskwatch.wiring import build_pipeline

    overrides = {
        "runtime.precision": args.precision,
        "runtime.threads": args.threads or None,
        "runtime.engine": args.engine,
    }
    cfg = load_config(args.config, overrides=overrides)
    if args.qengine:
        # torch only: force a quantized engine (e.g. qnnpack on x86, to tell kernel differences from architecture
        # differences); the int8 weights are packed for the engine at load time, so it must be set before the build
        import maskwatch.models.int8 as mq

        mq.select_engine = lambda *a, **k: args.qengine
    t0 = time.perf_counter()
    pipeline = build_pipeline(cfg)
    load_s = time.perf_counter() - t0
    det, cls = pipeline.detector, pipeline.classifier
    out = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "engine": args.engine,
        **runtime_info(args.engine),
        "precision_asked": args.precision,
        # what the models say they run at (an engine without int8 files would run fp32)
        "precision": f"{getattr(det, 'precision', '?')}/{getattr(cls, 'precision', '?')}",
        "models": [model_file(det), model_file(cls)],
        "torch_imported": "torch" in sys.modules,
        "score_threshold": cfg.detector.score_threshold,
        "classes": list(CLASS_NAMES),
        "load_s": round(load_s, 3),
        "frames": [],
    }
    t0 = time.perf_counter()
    for i, (name, image) in enumerate(frames_from(args.video, args.frames, args.images)):
        res = pipeline(Frame(image=image, index=i, timestamp_s=0.0, name=name))
        f = res.faces
        out["frames"].append(
            {
                "name": name,
                "shape": list(image.shape),
                "boxes": np.round(f.xyxy.astype(float), 3).tolist(),
                "det_scores": np.round(f.det_score.astype(float), 5).tolist(),
                "class_probs": np.round(f.class_prob.astype(float), 5).tolist(),
                "labels": [f.label(j) for j in range(len(f))],
                "ms": {k: round(v, 1) for k, v in res.timings_ms.items()},
            }
        )
    out["run_s"] = round(time.perf_counter() - t0, 2)
    Path(args.out).write_text(json.dumps(out, indent=1))
    n_faces = sum(len(fr["boxes"]) for fr in out["frames"])
    print(
        f"{describe(out)}: {len(out['frames'])} frames, {n_faces} faces, load {load_s:.1f} s, run {out['run_s']} s "
        f"-> {args.out}"
    )
    return 0


def describe(run: dict) -> str:
    """One line naming what produced a record (old torch-only records too)."""
    if run.get("engine", "") == "onnx":
        what = f"onnxruntime {run.get('onnxruntime')} {run.get('providers')}"
    else:
        what = f"torch {run.get('torch')} qengine {run.get('qengine', run.get('engine'))}"
    models = ", ".join(m for m in run.get("models", []) if m)
    return f"{run['machine']} {what} precision {run['precision']}" + (f" ({models})" if models else "")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def compare(path_a: str, path_b: str, args) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (path_a, path_b))
    fb = {fr["name"]: fr for fr in b["frames"]}
    thr = a["score_threshold"]
    safe = thr + args.margin
    matched, ious, dprob, ddet, agree = 0, [], [], [], 0
    unmatched = []  # (frame, run, det_score)
    safe_unmatched, safe_disagree = 0, 0
    worst = []
    for fa in a["frames"]:
        if fa["name"] not in fb:
            print(f"frame {fa['name']} missing from {path_b}")
            return 2
        fr_b = fb[fa["name"]]
        ba, bb = np.array(fa["boxes"]).reshape(-1, 4), np.array(fr_b["boxes"]).reshape(-1, 4)
        m = iou_matrix(ba, bb)
        used_a, used_b = set(), set()
        for flat in np.argsort(-m, axis=None):
            i, j = np.unravel_index(flat, m.shape)
            if m[i, j] < 0.5:
                break
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            matched += 1
            ious.append(m[i, j])
            pa, pb = np.array(fa["class_probs"][i]), np.array(fr_b["class_probs"][j])
            dp = float(np.abs(pa - pb).max())
            dprob.append(dp)
            ddet.append(abs(fa["det_scores"][i] - fr_b["det_scores"][j]))
            same = fa["labels"][i] == fr_b["labels"][j]
            agree += same
            if not same and min(fa["det_scores"][i], fr_b["det_scores"][j]) >= safe:
                safe_disagree += 1
            worst.append((dp, fa["name"], fa["labels"][i], fr_b["labels"][j], float(m[i, j])))
        for i in set(range(len(ba))) - used_a:
            unmatched.append((fa["name"], "A", fa["det_scores"][i]))
            safe_unmatched += fa["det_scores"][i] >= safe
        for j in set(range(len(bb))) - used_b:
            unmatched.append((fa["name"], "B", fr_b["det_scores"][j]))
            safe_unmatched += fr_b["det_scores"][j] >= safe
    ious_a = np.array(ious) if ious else np.array([np.nan])
    print(f"A: {path_a}: {describe(a)}")
    print(f"B: {path_b}: {describe(b)}")
    hashed = [m for run in (a, b) for m in run.get("models", []) if m and "@" in m]
    if len(hashed) == 4 and a["models"] != b["models"] and a["precision"] == b["precision"]:
        print(f"WARNING: the two runs used different model files: {a['models']} vs {b['models']}")
    print(
        f"frames: {len(a['frames'])}; faces A {sum(len(f['boxes']) for f in a['frames'])}, "
        f"B {sum(len(f['boxes']) for f in b['frames'])}"
    )
    print(
        f"matched (IoU >= 0.5): {matched}; unmatched: {len(unmatched)} "
        f"({safe_unmatched} with det score >= {safe:.2f} = threshold {thr} + margin {args.margin})"
    )
    for name, run, score in unmatched:
        print(f"  unmatched in {run}: {name} det_score {score:.3f}")
    if matched:
        print(f"box IoU: median {np.median(ious_a):.4f}, min {ious_a.min():.4f}")
        print(
            f"max |d class prob| {max(dprob):.4f} (median {np.median(dprob):.4f}); "
            f"max |d det score| {max(ddet):.4f} (median {np.median(ddet):.4f})"
        )
        print(f"label agreement: {agree}/{matched} = {100 * agree / matched:.1f} %")
        for dp, name, la, lb, iou in sorted(worst, reverse=True)[:3]:
            print(f"  largest d prob: {dp:.4f} on {name} ({la} vs {lb}, IoU {iou:.3f})")
    if args.tolerance == "same-engine":
        ok = (
            matched > 0
            and safe_unmatched == 0
            and safe_disagree == 0
            and ious_a.min() >= args.min_iou
            and max(dprob) <= args.max_dprob
            and max(ddet) <= args.max_ddet
        )
        rule = (
            f"same-engine: every face with det score >= {safe:.2f} matched, labels agree, box IoU >= {args.min_iou}, "
            f"|d class prob| <= {args.max_dprob}, |d det score| <= {args.max_ddet}"
        )
    else:
        # different int8 kernels (x86/fbgemm vs qnnpack) round differently; on crowded scenes with tiny faces that
        # moves single faces as much as int8 vs fp32 does, so judge the bulk, not the worst face
        ok = (
            matched > 0
            and safe_unmatched == 0
            and np.median(ious_a) >= args.min_iou
            and 100 * agree / matched >= args.min_agree
            and np.median(dprob) <= args.max_dprob
            and np.median(ddet) <= args.max_ddet
        )
        rule = (
            f"cross-engine: every face with det score >= {safe:.2f} matched, label agreement >= {args.min_agree} %, "
            f"median box IoU >= {args.min_iou}, median |d class prob| <= {args.max_dprob}, "
            f"median |d det score| <= {args.max_ddet}"
        )
    print(f"tolerance {rule}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", help="video file: its first --frames frames")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--images", help="folder of images (all of them, by name)")
    p.add_argument("--config", help="maskwatch config (default: the built-in defaults)")
    p.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--engine", default="onnx", choices=["onnx", "torch"], help="what runs the models (default onnx)")
    p.add_argument("--qengine", help="torch only: force this quantized engine (default: what maskwatch selects)")
    p.add_argument("--out", help="JSON to write")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"))
    p.add_argument(
        "--tolerance",
        choices=["same-engine", "cross-engine"],
        default="same-engine",
        help="same-engine (default): worst face within --min-iou/--max-dprob/--max-ddet (defaults 0.9/0.05/0.05, "
        "margin 0.05); cross-engine: medians within them (defaults 0.9/0.02/0.02, margin 0.15) and --min-agree",
    )
    p.add_argument("--min-iou", type=float, default=0.9)
    p.add_argument("--max-dprob", type=float)
    p.add_argument("--max-ddet", type=float)
    p.add_argument("--min-agree", type=float, default=95.0, help="label agreement %% (cross-engine)")
    p.add_argument("--margin", type=float, help="det-score margin above the threshold (see above)")
    args = p.parse_args(argv)
    cross = args.tolerance == "cross-engine"
    args.max_dprob = args.max_dprob if args.max_dprob is not None else (0.02 if cross else 0.05)
    args.max_ddet = args.max_ddet if args.max_ddet is not None else (0.02 if cross else 0.05)
    args.margin = args.margin if args.margin is not None else (0.15 if cross else 0.05)
    if args.compare:
        return compare(*args.compare, args)
    if not args.out or not (args.video or args.images):
        p.error("give --out and --video and/or --images (or --compare A B)")
    return record(args)


if __name__ == "__main__":
    sys.exit(main())
