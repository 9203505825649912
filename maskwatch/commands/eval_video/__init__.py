"""``maskwatch eval-video``: the video benchmark (tracks, per-person decisions, alerts) and its scorer."""
