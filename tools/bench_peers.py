"""maskwatch against stand-ins for the peer pipelines, end to end on one 640x480 clip, start-up included.

Each variant is a fresh process that decodes the clip, finds faces, labels them, draws the boxes and encodes an mp4;
the wall time of the whole process (start-up included) and of its frame loop are recorded, variants interleaved,
``--repeats`` times, medians.

- ``maskwatch``: ``maskwatch run --source CLIP --output OUT`` with the default config.
- ``peer_two_nets``: the usual peer pipeline's shape, a face detector then a MobileNetV2 classifier at 224x224 on
  every face (torchvision, fp32, random weights: only the time is meant). The usual detector, OpenCV's res10 SSD,
  is a Caffe model that OpenCV 5 cannot read, so YuNet (OpenCV's ``FaceDetectorYN``, a faster detector) stands in:
  a flattering peer.
- ``peer_one_net``: a one-net face-and-mask detector at 260x260 (AIZOO's shape), played by YuNet at 260x260 with no
  classifier: the floor of what such a pipeline costs here.

Usage: ``python tools/bench_peers.py --video CLIP --yunet ../shared/pretrained/yunet_n_320_320.onnx [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peer(kind: str, clip: str, yunet: str, out: str) -> dict:
    """Run one peer pipeline over ``clip`` in this process; frames and loop seconds."""
    import cv2
    import numpy as np

    two_nets = kind == "peer_two_nets"
    if two_nets:
        import torch
        from torchvision.models import mobilenet_v2

        torch.set_num_threads(2)
        net = mobilenet_v2(weights=None, num_classes=3).eval()
    cap = cv2.VideoCapture(clip)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    size = (w, h) if two_nets else (260, 260)
    detector = cv2.FaceDetectorYN.create(yunet, "", size, 0.6)
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 25.0, (w, h))
    frames, start = 0, time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        image = frame if two_nets else cv2.resize(frame, size)
        _, faces = detector.detect(image)
        faces = np.zeros((0, 15), np.float32) if faces is None else faces
        scale = (w / size[0], h / size[1])
        for face in faces:
            x, y, fw, fh = (face[:4] * np.array([*scale, *scale])).astype(int)
            if two_nets:
                crop = frame[max(y, 0) : y + fh, max(x, 0) : x + fw]
                if crop.size:
                    batch = cv2.resize(crop, (224, 224)).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
                    with torch.inference_mode():
                        net(torch.from_numpy(batch))
            cv2.rectangle(frame, (x, y), (x + fw, y + fh), (0, 200, 0), 2)
        writer.write(frame)
        frames += 1
    writer.release()
    return {"frames": frames, "loop_s": time.perf_counter() - start}


def run_variant(kind: str, clip: Path, yunet: Path, out: Path) -> dict:
    """One fresh process of ``kind``; its frames, loop time (peers) and whole wall time."""
    if kind == "maskwatch":
        cmd = [sys.executable, "-m", "maskwatch", "run", "--source", str(clip), "--output", str(out), "--no-progress"]
    else:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--video",
            str(clip),
            "--yunet",
            str(yunet),
            "--out",
            str(out),
        ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-2000:]}")
    if kind == "maskwatch":
        line = next(x for x in done.stderr.splitlines() if " done: " in x)  # "done: N frames in S s (…)"
        words = line.split()
        frames = int(words[words.index("done:") + 1])
        loop_s = float(words[words.index("in") + 1])
        return {"frames": frames, "loop_s": loop_s, "wall_s": wall}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, required=True, help="a 640x480 clip")
    parser.add_argument("--yunet", type=Path, required=True, help="yunet_n_320_320.onnx")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(peer(args.child, str(args.video), str(args.yunet), args.out)))
        return
    kinds = ("maskwatch", "peer_two_nets", "peer_one_net")
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        for i in range(args.repeats):
            for kind in kinds:
                runs[kind].append(run_variant(kind, args.video.resolve(), args.yunet.resolve(), Path(tmp) / f"{i}.mp4"))
    table = {}
    for kind, rs in runs.items():
        table[kind] = {
            "fps_with_startup": statistics.median(r["frames"] / r["wall_s"] for r in rs),
            "fps_steady": statistics.median(r["frames"] / r["loop_s"] for r in rs),
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "frames": rs[0]["frames"],
        }
    ours = table["maskwatch"]["fps_with_startup"]
    for kind, row in table.items():
        row["maskwatch_speedup_with_startup"] = ours / row["fps_with_startup"]
        print(
            f"{kind:<14} {row['frames']} frames: {row['fps_with_startup']:6.1f} fps with start-up "
            f"({row['wall_s']:.2f} s), {row['fps_steady']:6.1f} fps steady; "
            f"maskwatch x{row['maskwatch_speedup_with_startup']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "table": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
