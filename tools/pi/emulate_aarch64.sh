#!/usr/bin/env bash
# Functional check of maskwatch on aarch64 by emulation: an arm64 Debian 12 (bookworm) root made with
# debootstrap and run under qemu-user-static (binfmt_misc), with maskwatch's lean install (ONNX Runtime, no torch).
# See tools/pi/README.md.
#
#   sudo tools/pi/emulate_aarch64.sh [ROOT]        # ROOT defaults to $PI_ROOT, else /work/pi-root
#
# Environment: MIRROR (Debian mirror URL; default: the host's own apt configuration), SHARED (the shared data
# folder; default: ../shared next to the repo), CLIP_SRC (video for the 720p clip; default nomask.mp4, 1280x720),
# FRAMES (720p clip length, default 50), EVAL_N (val images; 0 = the whole val split, the default), EVAL_CONFIG
# (config for eval; default: none, the built-in defaults the int8 criterion is stated for; "pi" = configs/pi.yaml),
# EVAL_PRECISIONS (default "fp32 int8"), COMPARE_N (mask.mp4 frames for compare_arch.py, default 20),
# COMPARE_IMAGES (val images for it, default 10), COMPARE_PRECISIONS (default "int8 fp32"), QEMU_CPU (the emulated
# CPU: default cortex-a72 = a Raspberry Pi 4's; cortex-a76 = a Pi 5's; max = every feature qemu has; compare and
# eval name their files after a CPU other than the default), PREFETCH (1 = the host's pip downloads the compiled
# aarch64 wheels, 0 = pip inside the root downloads everything), TESTS, PYTEST_TIMEOUT (s, default 3600), NICE
# (default 19), STEPS (space-separated subset of: host binfmt debootstrap aptroot copy venv engine pytest run eval
# compare installpi size x86; default all).
# Every step with a stamp (debootstrap aptroot venv) is skipped when done (ROOT/.maskwatch-stamps); delete a stamp
# to redo it. The check steps always run.
set -euo pipefail
{ # the whole script is read before it runs (safe to edit while a run is going)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT="${1:-${PI_ROOT:-/work/pi-root}}"
SHARED="${SHARED:-$(cd "$REPO/.." && pwd)/shared}"
CLIP_SRC="${CLIP_SRC:-$SHARED/data/videos/nomask.mp4}"
FRAMES="${FRAMES:-50}"
EVAL_N="${EVAL_N:-0}"
EVAL_CONFIG="${EVAL_CONFIG:-}"
COMPARE_N="${COMPARE_N:-20}"
COMPARE_IMAGES="${COMPARE_IMAGES:-10}"
COMPARE_PRECISIONS="${COMPARE_PRECISIONS:-int8 fp32}"
EVAL_PRECISIONS="${EVAL_PRECISIONS:-fp32 int8}"
QEMU_CPU="${QEMU_CPU:-cortex-a72}"
# aarch64 outputs of compare and eval: arch_aarch64_PRECISION.json (eval_aarch64_...) for the Pi 4's CPU, with the CPU
# in the name for another one (arch_aarch64_cortex-a76_int8.json)
if [[ $QEMU_CPU == cortex-a72 ]]; then ARCH_TAG=aarch64_; else ARCH_TAG="aarch64_${QEMU_CPU}_"; fi
PREFETCH="${PREFETCH:-1}"
PYTEST_TIMEOUT="${PYTEST_TIMEOUT:-3600}"
NICE="${NICE:-19}"
STEPS="${STEPS:-host binfmt debootstrap aptroot copy venv engine pytest run eval compare installpi size x86}"
# the host's Python with maskwatch installed (makes the clips, fetches wheels, runs the x86 reference)
HOST_PY="${HOST_PY:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}"
HOST_PY="${HOST_PY:-$(command -v python3)}"
# CA bundle for pip in the root: HOST_CA, else the host pip's `cert` setting, else the host's system bundle
HOST_CA="${HOST_CA:-$("$HOST_PY" -m pip config get global.cert 2>/dev/null || true)}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
STAMPS="$ROOT/.maskwatch-stamps"
WORK=/opt/mw                       # inside the root: repo copy, venv, inputs, results
RESULTS="$ROOT$WORK/results"       # seen from the host
# compiled dependencies worth fetching natively (the rest is small and pure Python); no torch: `pip install .` is
# the lean run-time install (torch is in the [train] extra)
PREFETCH_DEPS="onnxruntime opencv-python-headless numpy pillow matplotlib contourpy kiwisolver fonttools pyyaml
    pydantic pydantic-core protobuf"
# eval's config: the built-in defaults (input 640), or the Pi profile (input 480)
case $EVAL_CONFIG in
    "") EVAL_TAG=default; EVAL_CFG_ROOT=""; EVAL_CFG_HOST="" ;;
    pi) EVAL_TAG=pi; EVAL_CFG_ROOT="--config $WORK/maskwatch/configs/pi.yaml"
        EVAL_CFG_HOST="--config $REPO/configs/pi.yaml" ;;
    *) echo "EVAL_CONFIG must be empty or pi" >&2; exit 2 ;;
esac

log() { printf '\n[%(%H:%M:%S)T] == %s\n' -1 "$*"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }
done_() { [[ -f "$STAMPS/$1" ]]; }
mark() { mkdir -p "$STAMPS"; date -Is >"$STAMPS/$1"; }
# timed NAME CMD...: run CMD, print and record its wall time in $RESULTS/timings.tsv
timed() {
    local name="$1"; shift
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    "$@" || rc=$?
    t1=$(date +%s.%N)
    mkdir -p "$RESULTS"
    printf '%s\t%.1f\t%s\t%s\n' "$name" "$(echo "$t1 - $t0" | bc)" "$rc" "$(date -Is)" | tee -a "$RESULTS/timings.tsv"
    return $rc
}
# rss FILE: GNU time -v's peak RSS in MB
rss() { awk -F': ' '/Maximum resident/ {printf "%.0f MB", $2 / 1024}' "$1" 2>/dev/null; }

[[ $(id -u) == 0 ]] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
"$HOST_PY" -c 'import cv2, maskwatch' 2>/dev/null \
    || { echo "HOST_PY=$HOST_PY cannot import cv2 and maskwatch: set HOST_PY=/path/to/venv/bin/python" >&2; exit 2; }
[[ $(uname -m) == x86_64 ]] || echo "note: host is $(uname -m), not x86_64; the x86 reference step may not mean much" >&2

# ---------------------------------------------------------------------------------------------------------------
# mounts for the chroot; undone on exit
MOUNTED=()
mount_root() {
    local m
    # no /sys: the host's (x86) sysfs makes the cpuinfo library inside onnxruntime crash on import (SIGSEGV) under
    # qemu-user; without it cpuinfo fails cleanly and onnxruntime reads the CPU features from HWCAP (getauxval),
    # which qemu fills in for the emulated CPU. A real Pi has its own /sys, and cpuinfo works there.
    for m in proc dev dev/pts; do
        mountpoint -q "$ROOT/$m" && continue
        mkdir -p "$ROOT/$m"
        case $m in
            proc) mount -t proc proc "$ROOT/proc" ;;
            dev) mount --bind /dev "$ROOT/dev" ;;
            dev/pts) mount -t devpts devpts "$ROOT/dev/pts" ;;
        esac
        MOUNTED+=("$ROOT/$m")
    done
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    # the host's CA bundle as pip inside the root sees it (a host behind a TLS-inspecting proxy trusts its CA here)
    if [[ -f $HOST_CA ]]; then mkdir -p "$ROOT/etc/ssl" && cp -L "$HOST_CA" "$ROOT/etc/ssl/host-ca-bundle.crt"; fi
}
umount_root() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[$i]}" 2>/dev/null || true; done
    MOUNTED=()
}
trap umount_root EXIT
trap 'exit 130' INT TERM
# in_root CMD: run a bash command line inside the root, niced; QEMU_CPU picks the CPU qemu emulates for every
# program started there (qemu-user reads it from the environment)
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
        ${HOST_CA:+PIP_CERT=/etc/ssl/host-ca-bundle.crt} ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} \
        nice -n "$NICE" /bin/bash -c "$1"
}

# the Debian mirror: $MIRROR, else the host's apt sources (deb822 *.sources or one-line sources.list)
host_mirror() {
    local uri
    uri=$(awk '
        /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/ && t ~ /deb( |$)/) { print u; exit } u=""; s=""; t=""; next }
        /^URIs:/ { $1=""; split($0, a, " "); u=a[1] }
        /^Suites:/ { $1=""; s=$0 " " }
        /^Types:/ { $1=""; t=$0 " " }
        END { if (u != "" && s ~ /(^| )bookworm( |$)/ && t ~ /deb( |$)/) print u }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' \
            /etc/apt/sources.list | head -n1)
    fi
    printf '%s' "$uri"
}

# ---------------------------------------------------------------------------------------------------------------
if want host && ! { command -v debootstrap >/dev/null && [[ -x /usr/bin/qemu-aarch64-static ]] && command -v update-binfmts >/dev/null \
        && [[ -x /usr/bin/time ]] && command -v rsync >/dev/null && command -v bc >/dev/null; }; then
    log "host packages"
    apt-get update -q
    apt-get install -y -q debootstrap qemu-user-static binfmt-support time rsync bc
fi

if want binfmt; then
    log "binfmt_misc for aarch64"
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    if [[ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        grep -E '^(enabled|interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-aarch64
        # without the F (fix-binary) flag the interpreter must exist inside the root: copy it there (below)
    else
        echo "binfmt_misc cannot run aarch64 binaries here (no /proc/sys/fs/binfmt_misc/qemu-aarch64)." >&2
        echo "Without it a chroot cannot exec arm64 programs (qemu-aarch64-static can start one, but not its children)." >&2
        exit 3
    fi
fi

if want debootstrap && ! done_ debootstrap; then
    MIRROR="${MIRROR:-$(host_mirror)}"
    [[ -n $MIRROR ]] || { echo "no Debian mirror found in the host's apt configuration; set MIRROR=" >&2; exit 2; }
    log "debootstrap arm64 bookworm into $ROOT (mirror from ${MIRROR:+the host apt config or \$MIRROR})"
    mkdir -p "$ROOT"
    timed debootstrap nice -n "$NICE" debootstrap --arch=arm64 --variant=minbase bookworm "$ROOT" "$MIRROR"
    mark debootstrap
fi
[[ -x "$ROOT/bin/bash" ]] || { echo "no root at $ROOT (run the debootstrap step)" >&2; exit 2; }
# harmless with the F flag, needed without it
[[ -x "$ROOT/usr/bin/qemu-aarch64-static" ]] || cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
mount_root
in_root 'uname -m; . /etc/os-release; echo "$PRETTY_NAME"'

if want aptroot && ! done_ aptroot; then
    log "apt inside the root: python3, venv, pip, libs for OpenCV"
    timed apt_in_root in_root 'apt-get update -q && apt-get install -y -q --no-install-recommends \
        python3 python3-venv python3-pip libglib2.0-0 time ca-certificates'
    mark aptroot
fi
in_root 'python3 --version'

# ---------------------------------------------------------------------------------------------------------------
if want copy; then
    log "copy the repo's tracked files (no runs/, venvs) to $WORK/maskwatch; inputs from the shared data"
    mkdir -p "$ROOT$WORK/maskwatch" "$ROOT$WORK/inputs" "$RESULTS"
    if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        # tracked + untracked-but-not-ignored files (reads git, changes nothing); a tracked file deleted in the work
        # tree is left out. Into an empty folder: rsync --files-from does not delete what the tree no longer has.
        rm -rf "$ROOT$WORK/maskwatch" && mkdir -p "$ROOT$WORK/maskwatch"
        git -C "$REPO" ls-files -co --exclude-standard | grep -v -E '^(runs|test-artifacts)/' \
            | while IFS= read -r f; do if [[ -e "$REPO/$f" ]]; then printf '%s\n' "$f"; fi; done \
            | rsync -a --files-from=- "$REPO/" "$ROOT$WORK/maskwatch/"
    else
        rsync -a --delete --exclude runs/ --exclude test-artifacts/ --exclude '*.egg-info/' --exclude __pycache__/ \
            --exclude .git/ "$REPO/" "$ROOT$WORK/maskwatch/"
    fi
    in="$ROOT$WORK/inputs"
    # clip720.mp4: the first $FRAMES frames of $CLIP_SRC at 1280x720 (scaled if it is another size), for run's peak
    # RSS; mask.mp4: the first $COMPARE_N frames of the masked video, for compare_arch.py. Made with the host's OpenCV.
    "$HOST_PY" - "$CLIP_SRC" "$in/clip720.mp4" "$FRAMES" 1280x720 "$SHARED/data/videos/mask.mp4" "$in/mask.mp4" \
        "$COMPARE_N" <<'PY'
import sys
from pathlib import Path

import cv2

def clip(src, dst, n, size=None):
    if Path(dst).is_file():
        return
    cap = cv2.VideoCapture(src)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    wh = size or (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    out = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, wh)
    k = 0
    while k < n:
        ok, frame = cap.read()
        if not ok:
            break
        if (frame.shape[1], frame.shape[0]) != wh:
            frame = cv2.resize(frame, wh, interpolation=cv2.INTER_AREA)
        out.write(frame)
        k += 1
    out.release()
    print(f"clip: {k} frames {wh[0]}x{wh[1]} @ {fps:g} fps from {src} -> {dst}")

a = sys.argv[1:]
clip(a[0], a[1], int(a[2]), tuple(int(v) for v in a[3].split("x")))
clip(a[4], a[5], int(a[6]))
PY
    # the val split (EVAL_N=0: all of it) and the first $COMPARE_IMAGES val images for compare_arch.py
    voc="$SHARED/data/facemask-voc"
    mkdir -p "$in/voc/images" "$in/voc/annotations" "$in/compare_images"
    if [[ $EVAL_N == 0 ]]; then cp "$voc/splits/val.txt" "$in/voc/val_eval.txt"; else head -n "$EVAL_N" "$voc/splits/val.txt" >"$in/voc/val_eval.txt"; fi
    while IFS= read -r stem; do
        [[ -n $stem ]] || continue
        ls "$in/voc/images/$stem".* >/dev/null 2>&1 || cp "$voc"/images/"$stem".* "$in/voc/images/"
        [[ -f "$in/voc/annotations/$stem.xml" ]] || cp "$voc/annotations/$stem.xml" "$in/voc/annotations/"
    done < <(cat "$in/voc/val_eval.txt"; head -n "$COMPARE_IMAGES" "$voc/splits/val.txt")
    rm -f "$in/compare_images"/*
    head -n "$COMPARE_IMAGES" "$voc/splits/val.txt" | while IFS= read -r stem; do cp "$voc"/images/"$stem".* "$in/compare_images/"; done
    echo "val images for eval: $(grep -c . "$in/voc/val_eval.txt"); for compare: $(ls "$in/compare_images" | wc -l)"
fi

if want venv && ! done_ venv; then
    log "venv in the root: pip install maskwatch (the lean run-time install: ONNX Runtime, OpenCV headless; no torch)"
    if grep -q -E '^[[:space:]]*torch' <(sed -n '/^install_requires/,/^[^[:space:]]/p' "$ROOT$WORK/maskwatch/setup.cfg"); then
        echo "NOTE: setup.cfg's install_requires still lists torch: the install below is not the lean one" \
            | tee -a "$RESULTS/problems.txt"
    fi
    in_root "[[ -x $WORK/venv/bin/python ]] || python3 -m venv $WORK/venv"
    FL=""
    if [[ $PREFETCH == 1 ]]; then
        # the host's pip fetches the compiled aarch64 wheels (native speed); the root's pip installs them by name with
        # maskwatch (with --find-links alone it downloads an equal version from the index again) and resolves and
        # fetches the small pure-Python rest. --no-deps because pip download --platform evaluates environment markers
        # for the host. All of them are maskwatch's dependencies (or theirs): the install is the one pip would make.
        rm -rf "$ROOT$WORK/wheels" && mkdir -p "$ROOT$WORK/wheels"   # only what this list fetches gets installed
        timed prefetch_wheels "$HOST_PY" -m pip download --no-deps --quiet -d "$ROOT$WORK/wheels" --only-binary=:all: \
            --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
            --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
            --platform linux_aarch64 --platform any \
            $PREFETCH_DEPS || echo "prefetch failed; pip in the root fetches everything" | tee -a "$RESULTS/problems.txt"
        FL="$(cd "$ROOT$WORK/wheels" && ls *.whl 2>/dev/null | sed "s|^|$WORK/wheels/|" | tr '\n' ' ')"
    fi
    # as deploy/install-pi.sh does (a copy, not -e); --no-cache-dir so the venv's size is what a user gets
    timed pip_maskwatch in_root "$WORK/venv/bin/pip install --no-cache-dir $FL $WORK/maskwatch" \
        || timed pip_maskwatch_index in_root "$WORK/venv/bin/pip install --no-cache-dir $WORK/maskwatch"
    in_root "$WORK/venv/bin/pip list 2>/dev/null" >"$RESULTS/pip_list_aarch64.txt"
    grep -i -E '^(torch|torchvision|onnxruntime|onnx|opencv[-a-z]*|numpy|matplotlib|maskwatch) ' "$RESULTS/pip_list_aarch64.txt" || true
    if grep -q -i -E '^torch ' "$RESULTS/pip_list_aarch64.txt"; then
        echo "PROBLEM: torch was installed by pip install maskwatch" | tee -a "$RESULTS/problems.txt"
    fi
    # the size of the lean install, before pytest goes in (step pytest adds it)
    {
        echo "# $WORK/venv right after pip install maskwatch (aarch64, $(date -Is))"
        in_root "du -sh $WORK/venv; du -sm $WORK/venv/lib/python3*/site-packages/* | sort -rn | head -n 12"
    } | tee "$RESULTS/size_aarch64.txt"
    mark venv
elif want venv; then
    log "maskwatch again from the repo copy into the existing venv (no dependencies: they are there)"
    timed pip_maskwatch_again in_root "$WORK/venv/bin/pip install --quiet --no-cache-dir --no-deps --force-reinstall $WORK/maskwatch"
fi

if want engine; then
    log "(a) ONNX Runtime in the root: version, providers, the CPU features it sees, and no torch"
    timed engine in_root "cd /tmp && $WORK/venv/bin/python - <<'PY'
import ctypes, platform, sys
import cv2, numpy, onnxruntime as ort
print('machine', platform.machine(), 'python', platform.python_version(), 'numpy', numpy.__version__, 'cv2', cv2.__version__)
print('onnxruntime', ort.__version__, 'device', ort.get_device(), 'providers', ort.get_available_providers())
# ONNX Runtime (through cpuinfo) picks its aarch64 kernels from the kernel's HWCAP bits: NEON (asimd) everywhere,
# sdot/udot (asimddp) on a Pi 5 (Cortex-A76), i8mm/SVE on newer cores. These are the bits this process gets.
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
hw, hw2 = libc.getauxval(16), libc.getauxval(26)
names = ['fp', 'asimd', 'evtstrm', 'aes', 'pmull', 'sha1', 'sha2', 'crc32', 'atomics', 'fphp', 'asimdhp', 'cpuid',
         'asimdrdm', 'jscvt', 'fcma', 'lrcpc', 'dcpop', 'sha3', 'sm3', 'sm4', 'asimddp', 'sha512', 'sve', 'asimdfhm',
         'dit', 'uscat', 'ilrcpc', 'flagm', 'ssbs', 'sb', 'paca', 'pacg']
names2 = ['dcpodp', 'sve2', 'sveaes', 'svepmull', 'svebitperm', 'svesha3', 'svesm4', 'flagm2', 'frint', 'svei8mm',
          'svef32mm', 'svef64mm', 'svebf16', 'i8mm', 'bf16', 'dgh', 'rng', 'bti', 'mte']
print('HWCAP', ' '.join(n for i, n in enumerate(names) if hw >> i & 1))
print('HWCAP2', ' '.join(n for i, n in enumerate(names2) if hw2 >> i & 1) or '-')
print('int8 kernels: dotprod', bool(hw >> 20 & 1), 'i8mm', bool(hw2 >> 13 & 1), 'sve', bool(hw >> 22 & 1))
import maskwatch, maskwatch.cli
from maskwatch.wiring import build_pipeline
from maskwatch.config import load_config
for precision in ('fp32', 'int8'):
    try:
        cfg = load_config('$WORK/maskwatch/configs/pi.yaml', overrides={'runtime.precision': precision})
        p = build_pipeline(cfg)
        print('pi.yaml', precision, '->', cfg.runtime.engine, 'detector', p.detector.precision, 'classifier', p.classifier.precision,
              'threads', cfg.runtime.threads)
    except Exception as exc:
        print('pi.yaml', precision, '-> FAILED', type(exc).__name__, str(exc)[:200])
print('maskwatch', maskwatch.__version__, 'torch imported:', 'torch' in sys.modules)
try:
    import torch
    print('torch is installed', torch.__version__)
except ImportError:
    print('torch is not installed')
PY" 2>&1 | grep -v DEBUG | tee "$RESULTS/engine_aarch64.txt" || true
fi

if want pytest; then
    log "(b) the torch-free tests"
    # the test files that run in a venv without torch (checked in a lean venv on x86: 140 tests); the others import
    # torch or need chromium, Xvfb or Ray, which the root does not have
    TESTS="${TESTS:-tests/test_types_config.py tests/test_track.py tests/test_capture.py tests/test_events.py \
        tests/test_metrics.py tests/test_render.py tests/test_report.py tests/test_lean.py tests/test_pipeline.py \
        tests/test_monitor.py tests/test_runner.py tests/test_evaluate.py tests/test_chunks.py tests/test_webhook.py}"
    in_root "$WORK/venv/bin/pip install --quiet pytest" || true
    timed pytest in_root "cd $WORK/maskwatch && timeout $PYTEST_TIMEOUT $WORK/venv/bin/python -m pytest -q -p no:cacheprovider \
        --durations=5 -m 'not slow' $TESTS" 2>&1 | tee "$RESULTS/pytest_aarch64.txt" || true
fi

CONFIG_ARG="--config $WORK/maskwatch/configs/pi.yaml"
if want run; then
    log "(c) maskwatch run --config pi.yaml on the ${FRAMES}-frame 720p clip; peak RSS by GNU time -v"
    in_root "rm -f $WORK/results/ev.jsonl"
    timed run in_root "cd $WORK/results && /usr/bin/time -v -o $WORK/results/run_time_aarch64.txt \
        $WORK/venv/bin/maskwatch run --source $WORK/inputs/clip720.mp4 --events $WORK/results/ev.jsonl \
        --output $WORK/results/out.mp4 --detections $WORK/results/det_aarch64.jsonl $CONFIG_ARG" \
        2>&1 | tee "$RESULTS/run_aarch64.log" || true
    grep -E 'Maximum resident|Elapsed|Exit status' "$RESULTS/run_time_aarch64.txt" || true
    echo "peak RSS aarch64 (emulated): $(rss "$RESULTS/run_time_aarch64.txt")"
fi

if want eval; then
    log "(d) maskwatch eval --engine onnx on $(grep -c . "$ROOT$WORK/inputs/voc/val_eval.txt") val images, fp32 and int8 ($EVAL_TAG config)"
    for precision in $EVAL_PRECISIONS; do
        timed "eval_${EVAL_TAG}_$precision" in_root "cd $WORK/results && $WORK/venv/bin/maskwatch eval --engine onnx \
            --precision $precision --data $WORK/inputs/voc --split $WORK/inputs/voc/val_eval.txt \
            --json $WORK/results/eval_${ARCH_TAG}${EVAL_TAG}_$precision.json $EVAL_CFG_ROOT" \
            2>&1 | grep -v DEBUG | tee "$RESULTS/eval_${ARCH_TAG}${EVAL_TAG}_$precision.log" || true
    done
fi

if want compare; then
    log "outputs on the same frames: aarch64 (emulated, $QEMU_CPU) for the host to compare ($COMPARE_PRECISIONS)"
    cp "$HERE/compare_arch.py" "$ROOT$WORK/compare_arch.py"
    for precision in $COMPARE_PRECISIONS; do
        timed "compare_aarch64_$precision" in_root "cd /tmp && $WORK/venv/bin/python $WORK/compare_arch.py --engine onnx \
            --precision $precision --video $WORK/inputs/mask.mp4 --frames $COMPARE_N --images $WORK/inputs/compare_images \
            --out $WORK/results/arch_$ARCH_TAG$precision.json" 2>&1 | { grep -v DEBUG || true; }
    done
fi

if want installpi; then
    log "the Pi install of docs/raspberry-pi.md: deploy/install-pi.sh in the root, then the service's command as its user"
    # install-pi.sh installs from the folder it lives in: the repo copy; pip fetches from the index itself. No systemd
    # runs in a chroot, so the unit is installed but not started; its ExecStart is run here by hand as the service
    # user, as systemd would (StateDirectory= makes /var/lib/maskwatch owned by the user; the source is the clip).
    timed install_pi in_root "bash $WORK/maskwatch/deploy/install-pi.sh $WORK/inputs/clip720.mp4" \
        2>&1 | tee "$RESULTS/install_pi.log" || true
    timed service_run in_root "set -e
        install -d -o maskwatch -g maskwatch -m 755 /var/lib/maskwatch
        . /etc/maskwatch/maskwatch.env
        install -o maskwatch -m 644 \$MASKWATCH_SOURCE /var/lib/maskwatch/clip.mp4
        rm -f /var/lib/maskwatch/events.jsonl
        cd /var/lib/maskwatch
        runuser -u maskwatch -- env PYTHONUNBUFFERED=1 /opt/maskwatch/venv/bin/maskwatch run \
            --source /var/lib/maskwatch/clip.mp4 --config /etc/maskwatch/pi.yaml \
            --events /var/lib/maskwatch/events.jsonl --no-progress \$MASKWATCH_ARGS
        stat -c '%U %a %n' /etc/maskwatch/maskwatch.env /etc/maskwatch/pi.yaml /etc/systemd/system/maskwatch.service \
            /var/lib/maskwatch/events.jsonl
        echo events: \$(wc -l </var/lib/maskwatch/events.jsonl) lines" 2>&1 | grep -v DEBUG | tee "$RESULTS/service_run.log" || true
fi

if want size; then
    log "disk used by the installs on aarch64"
    {
        echo "# $(date -Is)"
        for v in /opt/maskwatch/venv $WORK/venv; do
            in_root "[[ -d $v ]] || exit 0; echo; echo '##' $v; du -sh $v; \
                $v/bin/pip list 2>/dev/null | grep -i -E '^(torch|onnxruntime|opencv[-a-z]*|numpy|matplotlib|pytest) '; \
                du -sm $v/lib/python3*/site-packages/* | sort -rn | head -n 8"
        done
        echo; echo "## what apt added to the Debian minbase for it (python3, venv, pip, libglib2.0-0, time)"
        in_root "du -sh /usr/lib/python3.11 /usr/lib/python3/dist-packages 2>/dev/null; du -sh /usr 2>/dev/null"
    } 2>&1 | tee -a "$RESULTS/size_aarch64.txt"
fi

umount_root

if want x86; then
    log "host (x86) reference: the same outputs, the same run command (peak RSS), the same evals"
    cd "$ROOT$WORK/results"
    for precision in $COMPARE_PRECISIONS; do
        timed "compare_x86_$precision" nice -n "$NICE" "$HOST_PY" "$HERE/compare_arch.py" --engine onnx --precision "$precision" \
            --video "$ROOT$WORK/inputs/mask.mp4" --frames "$COMPARE_N" --images "$ROOT$WORK/inputs/compare_images" \
            --out "$RESULTS/arch_x86_$precision.json" 2>&1 | { grep -v DEBUG || true; }
    done
    rm -f "$RESULTS/ev_x86.jsonl"
    HOST_BIN="$(dirname "$HOST_PY")"
    timed run_x86 nice -n "$NICE" /usr/bin/time -v -o "$RESULTS/run_time_x86.txt" "$HOST_BIN/maskwatch" run \
        --source "$ROOT$WORK/inputs/clip720.mp4" --events "$RESULTS/ev_x86.jsonl" --output "$RESULTS/out_x86.mp4" \
        --detections "$RESULTS/det_x86.jsonl" --config "$REPO/configs/pi.yaml" 2>&1 | tee "$RESULTS/run_x86.log" || true
    for precision in $EVAL_PRECISIONS; do
        timed "eval_x86_${EVAL_TAG}_$precision" nice -n "$NICE" "$HOST_BIN/maskwatch" eval --engine onnx --precision "$precision" \
            --data "$ROOT$WORK/inputs/voc" --split "$ROOT$WORK/inputs/voc/val_eval.txt" \
            --json "$RESULTS/eval_x86_${EVAL_TAG}_$precision.json" $EVAL_CFG_HOST 2>&1 | grep -v DEBUG \
            | tee "$RESULTS/eval_x86_${EVAL_TAG}_$precision.log" || true
    done
    cmp() { "$HOST_PY" "$HERE/compare_arch.py" --compare "$@" || true; }
    {
        for precision in $COMPARE_PRECISIONS; do
            for arm in "$RESULTS"/arch_aarch64_*"$precision".json; do
                [[ -f $arm ]] || continue
                cpu=$(basename "$arm" .json); cpu=${cpu#arch_aarch64_}; cpu=${cpu%"$precision"}; cpu=${cpu%_}
                echo "### $precision: aarch64 (emulated ${cpu:-cortex-a72}) vs x86, both ONNX Runtime; same models, other kernels"
                cmp "$RESULTS/arch_x86_$precision.json" "$arm"
                echo "--- the same pair against the looser cross-engine tolerance"
                cmp "$RESULTS/arch_x86_$precision.json" "$arm" --tolerance cross-engine | tail -n 1
                echo
            done
        done
        if [[ " $COMPARE_PRECISIONS " == *" fp32 "* && " $COMPARE_PRECISIONS " == *" int8 "* ]]; then
            echo "### for scale: x86 int8 vs x86 fp32"
            cmp "$RESULTS/arch_x86_fp32.json" "$RESULTS/arch_x86_int8.json" --tolerance cross-engine
        fi
    } | tee "$RESULTS/agreement.txt"
    echo "peak RSS of run on the 720p clip: aarch64 (emulated) $(rss "$RESULTS/run_time_aarch64.txt"), x86 $(rss "$RESULTS/run_time_x86.txt")"
fi
if [[ -d $RESULTS ]] && ls "$RESULTS"/eval_*.json >/dev/null 2>&1; then
    log "eval summary"
    "$HOST_PY" - "$RESULTS" <<'PY'
import json, sys
from pathlib import Path
for f in sorted(Path(sys.argv[1]).glob("eval_*.json")):
    d = json.loads(f.read_text())
    flat = {k: v for k, v in d.items() if isinstance(v, (int, float, str))}
    print(f.name, json.dumps(flat)[:400])
PY
fi
log "done; results in $RESULTS"
exit 0
}
