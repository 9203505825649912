#!/usr/bin/env bash
# One-command install of maskwatch on a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit) or any Debian 12 aarch64.
#   sudo deploy/install-pi.sh [SOURCE]        SOURCE: camera index (default 0) or stream URL
# Installs maskwatch's run-time install into /opt/maskwatch/venv: ONNX Runtime and OpenCV headless from PyPI's aarch64
# wheels, no torch (training is not done on the Pi: that is the [train] extra), puts the Pi profile in
# /etc/maskwatch/pi.yaml (engine onnx, int8) and the service maskwatch.service (enabled, started).
# Re-running it upgrades maskwatch and keeps /etc/maskwatch as edited.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source_spec="${1:-0}"
if [ "$(id -u)" != 0 ]; then echo "run as root (sudo $0)" >&2; exit 1; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip libglib2.0-0
id maskwatch >/dev/null 2>&1 || useradd --system --home /var/lib/maskwatch --shell /usr/sbin/nologin maskwatch
usermod -a -G video maskwatch
python3 -m venv /opt/maskwatch/venv
/opt/maskwatch/venv/bin/pip install --quiet --upgrade pip
# the lean install (no torch); --no-cache-dir: no second copy of the wheels under /root/.cache. An install made before
# the ONNX engine still holds torch: it goes (about 1 GB of disk).
/opt/maskwatch/venv/bin/pip install --quiet --no-cache-dir "$here"
if /opt/maskwatch/venv/bin/pip show --quiet torch 2>/dev/null; then
  /opt/maskwatch/venv/bin/pip uninstall --quiet --yes torch torchvision
fi
install -d -m 755 /etc/maskwatch
if [ ! -f /etc/maskwatch/pi.yaml ]; then
  install -m 644 "$here/configs/pi.yaml" /etc/maskwatch/pi.yaml
elif ! grep -q -E '^[[:space:]]+engine:' /etc/maskwatch/pi.yaml; then
  # a profile from before the ONNX engine: keep its edits, add the engine (there is no torch here to run anything else)
  cp -p /etc/maskwatch/pi.yaml /etc/maskwatch/pi.yaml.bak
  if grep -q '^runtime:' /etc/maskwatch/pi.yaml; then
    sed -i 's/^runtime:.*/&\n  engine: onnx/' /etc/maskwatch/pi.yaml
  else
    printf 'runtime:\n  engine: onnx\n' >> /etc/maskwatch/pi.yaml
  fi
  echo "added runtime.engine: onnx to /etc/maskwatch/pi.yaml (the old file is pi.yaml.bak)"
fi
if [ ! -f /etc/maskwatch/maskwatch.env ]; then
  umask 077
  printf 'MASKWATCH_SOURCE=%s\nMASKWATCH_ARGS=\n' "$source_spec" > /etc/maskwatch/maskwatch.env
fi
install -m 644 "$here/deploy/maskwatch.service" /etc/systemd/system/maskwatch.service
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now maskwatch.service
  echo "maskwatch is running: journalctl -u maskwatch -f; events in /var/lib/maskwatch/events.jsonl"
else
  echo "installed; no systemd running here, so the service was not started"
fi
/opt/maskwatch/venv/bin/maskwatch --version
