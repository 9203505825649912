"""Serve a video file as an HTTP MJPEG camera, looping at its own fps (to try live features: reconnect, --http).

    python tools/serve_mjpeg.py VIDEO [--port 8554] [--seconds N]

Then: maskwatch run --source http://127.0.0.1:8554/stream.mjpg ...  Stop this server (Ctrl-C) and start it again
to see maskwatch log the outage and reconnect. --seconds stops serving after N seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    cap = cv2.VideoCapture(args.video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    if not frames:
        raise SystemExit(f"no frames in {args.video}")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            start = time.monotonic()
            i = 0
            try:
                while True:
                    jpg = frames[i % len(frames)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                    self.wfile.write(f"Content-Length: {len(jpg)}\r\n\r\n".encode() + jpg + b"\r\n")
                    i += 1
                    time.sleep(max(start + i / fps - time.monotonic(), 0))
            except (BrokenPipeError, ConnectionResetError):
                return

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.seconds > 0:
        threading.Timer(args.seconds, server.shutdown).start()
    print(f"serving {args.video} ({len(frames)} frames, {fps:.0f} fps) on http://127.0.0.1:{args.port}/stream.mjpg")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
