#!/usr/bin/env bash
# One-command install of maskwatch on a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit) or any Debian 12 aarch64.
#   sudo deploy/install-pi.sh [SOURCE]        SOURCE: camera index (default 0) or stream URL
# Installs into /opt/maskwatch/venv (PyPI's aarch64 torch/torchvision are CPU builds; OpenCV headless),
# puts the Pi profile in /etc/maskwatch/pi.yaml and the service maskwatch.service (enabled, started).
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
/opt/maskwatch/venv/bin/pip install --quiet "torch==2.9.1" "torchvision==0.24.1"
/opt/maskwatch/venv/bin/pip install --quiet "$here"
install -d -m 755 /etc/maskwatch
[ -f /etc/maskwatch/pi.yaml ] || install -m 644 "$here/configs/pi.yaml" /etc/maskwatch/pi.yaml
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
