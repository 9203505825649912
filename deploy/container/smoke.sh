#!/usr/bin/env bash
# Build the container image and smoke-run it: the demo clip with the HTTP view, an events log and clips, as the
# non-root user; healthy while it runs, exit status 0, an alert clip written. Where no container engine answers or
# no base image can be had, print "container: skipped: <reason>" and exit 0.
#   MASKWATCH_CONTAINER_ENGINE  docker or podman (default: the first that answers)
#   MASKWATCH_CONTAINER_BASE    the base image (default python:3.11-slim-bookworm, pulled when absent)
set -euo pipefail
cd "$(dirname "$0")/../.."
engine=${MASKWATCH_CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null 2>&1 && timeout 20 "$candidate" info >/dev/null 2>&1; then
      engine=$candidate
      break
    fi
  done
fi
if [ -z "$engine" ]; then
  echo "container: skipped: no container engine answers here (docker without a running daemon, or no podman)"
  exit 0
fi
base=${MASKWATCH_CONTAINER_BASE:-python:3.11-slim-bookworm}
if ! "$engine" image inspect "$base" >/dev/null 2>&1 && ! timeout 300 "$engine" pull -q "$base" >/dev/null 2>&1; then
  echo "container: skipped: the base image $base is not here and cannot be pulled (set MASKWATCH_CONTAINER_BASE)"
  exit 0
fi
image=maskwatch:smoke
name=maskwatch-smoke-$$
data=$(mktemp -d)
chmod 777 "$data"
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$data" 2>/dev/null || true
}
trap cleanup EXIT
export BUILDAH_FORMAT=docker # podman: keep HEALTHCHECK (the OCI image format has none)
t=$(date +%s)
if ! "$engine" build -q --build-arg "BASE=$base" -f deploy/container/Dockerfile -t "$image" . >"$data/build.log" 2>&1; then
  tail -30 "$data/build.log" >&2
  echo "container: the image did not build" >&2
  exit 1
fi
built=$(( $(date +%s) - t ))
size=$("$engine" image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$engine" run -d --name "$name" -p "127.0.0.1:$port:$port" -e MASKWATCH_HTTP_TOKEN=smoke-token \
  -e "MASKWATCH_HEALTH_PORT=$port" -v "$data:/var/lib/maskwatch" "$image" \
  --source demo --realtime --http "0.0.0.0:$port" --no-progress \
  --events /var/lib/maskwatch/events.jsonl --clips /var/lib/maskwatch/clips >"$data/run.log" 2>&1
# The image's own HEALTHCHECK command, run in the container until it passes (the demo plays for 5 s).
test_json=$("$engine" image inspect "$image" --format '{{json .Config.Healthcheck.Test}}')
healthy=no
for _ in $(seq 1 100); do
  if python3 - "$engine" "$name" "$test_json" <<'PY'; then
import json, subprocess, sys

engine, name, test = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
sys.exit(subprocess.run([engine, "exec", name, *argv], capture_output=True, timeout=10).returncode)
PY
    healthy=yes
    break
  fi
  [ "$("$engine" inspect "$name" --format '{{.State.Running}}')" = true ] || break
  sleep 0.3
done
status=$(timeout 120 "$engine" wait "$name" | tail -n 1)
user=$("$engine" inspect "$name" --format '{{.Config.User}}')
clips=$(find "$data/clips" -name '*.mp4' 2>/dev/null | wc -l)
if [ "$healthy" != yes ] || [ "$status" != 0 ] || [ "$user" != maskwatch ] || [ "$clips" -lt 1 ] \
  || ! grep -q '"event":"alert"' "$data/events.jsonl"; then
  cat "$data/run.log" >&2
  "$engine" logs "$name" 2>&1 | tail -30 >&2
  echo "container: smoke run FAILED (healthy $healthy, exit $status, user $user, $clips clips)" >&2
  exit 1
fi
echo "container: built with $engine in $built s ($size, base $base); smoke run OK (healthy, user $user, exit 0, $clips clip)"
