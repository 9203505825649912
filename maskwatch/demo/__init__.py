"""The demo clip shipped with maskwatch: ``maskwatch run --source demo`` works with nothing else installed.

``demo.mp4`` (5 s, 480x360, 15 fps) is rendered by ``tools/make_video_bench.py --demo maskwatch/demo`` from the
CC0 facemask-voc scenes: a camera pan over a scene whose own faces stay fixed (posters), one person without a mask
and one with a mask walking across. Its truth (``seqinfo.ini``, ``gt/``) makes it a one-clip benchmark:
``maskwatch eval-video --data <this folder>``.
"""

from __future__ import annotations

from pathlib import Path

from maskwatch.errors import SourceError

DEMO_SOURCE = "demo"
"""The ``--source`` value that means the shipped demo clip."""


def demo_folder() -> Path:
    """The folder of the demo clip and its truth."""
    return Path(__file__).resolve().parent


def demo_path() -> Path:
    """The demo video; a :class:`~maskwatch.errors.SourceError` when this install lacks it."""
    path = demo_folder() / "demo.mp4"
    if not path.is_file():
        raise SourceError(f"the demo clip is missing from this install ({path}); reinstall maskwatch")
    return path


def resolve_source(spec: str) -> str:
    """``demo`` (when no file or folder of that name is in the working directory) -> the demo clip's path;
    any other ``--source`` unchanged."""
    if spec == DEMO_SOURCE and not Path(spec).exists():
        return str(demo_path())
    return spec
