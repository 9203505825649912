#!/usr/bin/env bash
# Functional check of maskwatch on aarch64 by emulation: an arm64 Debian 12 (bookworm) root made with
# debootstrap and run under qemu-user-static (binfmt_misc). See tools/pi/README.md.
#
#   sudo tools/pi/emulate_aarch64.sh [ROOT]        # ROOT defaults to $PI_ROOT, else /work/pi-root
#
# Environment: MIRROR (Debian mirror URL; default: the host's own apt configuration), SHARED (the shared data
# folder; default: ../shared next to the repo), FRAMES (clip length, default 50), EVAL_N (val images, default 10),
# COMPARE_N (frames for compare_arch.py, default 20), TORCH_SPEC / TORCHVISION_SPEC (default torch==2.9.1 /
# torchvision==0.24.1), PREFETCH (1 = host pip downloads the aarch64 wheels, 0 = pip inside the root downloads
# them), PYTEST_TIMEOUT (s, default 3600), NICE (default 10), STEPS (space-separated subset of: host binfmt
# debootstrap aptroot copy venv engine pytest run eval compare installpi x86; default all).
# Every step is skipped when it is already done (stamp files in ROOT/.maskwatch-stamps); delete a stamp to redo.
set -euo pipefail
{ # the whole script is read before it runs (safe to edit while a run is going)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROOT="${1:-${PI_ROOT:-/work/pi-root}}"
SHARED="${SHARED:-$(cd "$REPO/.." && pwd)/shared}"
FRAMES="${FRAMES:-50}"
EVAL_N="${EVAL_N:-10}"
COMPARE_N="${COMPARE_N:-20}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.9.1}"
TORCHVISION_SPEC="${TORCHVISION_SPEC:-torchvision==0.24.1}"
PREFETCH="${PREFETCH:-1}"
PYTEST_TIMEOUT="${PYTEST_TIMEOUT:-3600}"
NICE="${NICE:-10}"
STEPS="${STEPS:-host binfmt debootstrap aptroot copy venv engine pytest run eval compare installpi x86}"
# the host's Python with maskwatch installed (makes the clip, fetches wheels, runs the x86 reference)
HOST_PY="${HOST_PY:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}"
HOST_PY="${HOST_PY:-$(command -v python3)}"
# CA bundle for pip in the root: HOST_CA, else the host pip's `cert` setting, else the host's system bundle
HOST_CA="${HOST_CA:-$("$HOST_PY" -m pip config get global.cert 2>/dev/null || true)}"
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
STAMPS="$ROOT/.maskwatch-stamps"
WORK=/opt/mw                       # inside the root: repo copy, venv, inputs, results
RESULTS="$ROOT$WORK/results"       # seen from the host
# compiled dependencies worth fetching natively (the rest is small and pure Python)
PREFETCH_DEPS="opencv-python-headless opencv-python numpy pillow matplotlib contourpy kiwisolver fonttools pyyaml markupsafe pydantic pydantic-core"

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
    printf '%s\t%.1f\t%s\n' "$name" "$(echo "$t1 - $t0" | bc)" "$rc" | tee -a "$RESULTS/timings.tsv"
    return $rc
}

[[ $(id -u) == 0 ]] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
"$HOST_PY" -c 'import cv2, maskwatch' 2>/dev/null \
    || { echo "HOST_PY=$HOST_PY cannot import cv2 and maskwatch: set HOST_PY=/path/to/venv/bin/python" >&2; exit 2; }
[[ $(uname -m) == x86_64 ]] || echo "note: host is $(uname -m), not x86_64; the x86 reference step may not mean much" >&2

# ---------------------------------------------------------------------------------------------------------------
# mounts for the chroot; undone on exit
MOUNTED=()
mount_root() {
    local m
    for m in proc sys dev dev/pts; do
        mountpoint -q "$ROOT/$m" && continue
        mkdir -p "$ROOT/$m"
        case $m in
            proc) mount -t proc proc "$ROOT/proc" ;;
            sys) mount -t sysfs sys "$ROOT/sys" ;;
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
# in_root CMD: run a bash command line inside the root, niced
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
        ${HOST_CA:+PIP_CERT=/etc/ssl/host-ca-bundle.crt} \
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
        # tracked + untracked-but-not-ignored files (reads git, changes nothing)
        git -C "$REPO" ls-files -co --exclude-standard | grep -v -E '^(runs|test-artifacts)/' \
            | while IFS= read -r f; do [[ -e "$REPO/$f" ]] && printf '%s\n' "$f"; done \
            | rsync -a --delete --files-from=- "$REPO/" "$ROOT$WORK/maskwatch/"
    else
        rsync -a --delete --exclude runs/ --exclude test-artifacts/ --exclude '*.egg-info/' --exclude __pycache__/ \
            --exclude .git/ "$REPO/" "$ROOT$WORK/maskwatch/"
    fi
    # a short clip (first $FRAMES frames), made with the host's OpenCV; a split of $EVAL_N val images
    in="$ROOT$WORK/inputs"
    if [[ ! -f "$in/clip.mp4" ]]; then
        "$HOST_PY" - "$SHARED/data/videos/mask.mp4" "$in/clip.mp4" "$FRAMES" <<'PY'
import sys, cv2
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
cap = cv2.VideoCapture(src)
fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
out = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
k = 0
while k < n:
    ok, frame = cap.read()
    if not ok:
        break
    out.write(frame); k += 1
out.release()
print(f"clip: {k} frames {w}x{h} @ {fps:g} fps -> {dst}")
PY
    fi
    voc="$SHARED/data/facemask-voc"
    if [[ ! -f "$in/voc/val_small.txt" ]]; then
        mkdir -p "$in/voc/images" "$in/voc/annotations"
        head -n "$EVAL_N" "$voc/splits/val.txt" >"$in/voc/val_small.txt"
        while IFS= read -r stem; do
            cp "$voc"/images/"$stem".* "$in/voc/images/"
            cp "$voc/annotations/$stem.xml" "$in/voc/annotations/"
        done <"$in/voc/val_small.txt"
    fi
fi

CONFIG_ARG=""
if [[ -f "$ROOT$WORK/maskwatch/configs/pi.yaml" ]]; then CONFIG_ARG="--config $WORK/maskwatch/configs/pi.yaml"; fi

if want venv && ! done_ venv; then
    log "venv in the root; $TORCH_SPEC $TORCHVISION_SPEC (aarch64 PyPI CPU builds), then maskwatch"
    in_root "[[ -x $WORK/venv/bin/python ]] || python3 -m venv $WORK/venv"
    FL=""
    if [[ $PREFETCH == 1 ]]; then
        # the host's pip fetches the big aarch64 wheels (native speed) into a folder the root's pip reads with
        # --find-links; pip in the root still resolves (and fetches the small rest). --no-deps because pip download
        # --platform evaluates environment markers for the host (it would want torch's x86-only CUDA wheels).
        mkdir -p "$ROOT$WORK/wheels"
        timed prefetch_wheels "$HOST_PY" -m pip download --no-deps --quiet -d "$ROOT$WORK/wheels" --only-binary=:all: \
            --python-version 3.11 --implementation cp --abi cp311 \
            --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
            --platform linux_aarch64 --platform any \
            "$TORCH_SPEC" "$TORCHVISION_SPEC" $PREFETCH_DEPS
        FL="--find-links $WORK/wheels"
        # name the files: with --find-links alone pip fetches an equal version from the index again
        TORCH_REQS="$(cd "$ROOT$WORK/wheels" && ls torch-[0-9]*.whl torchvision-[0-9]*.whl \
            | sed "s|^|$WORK/wheels/|" | tr '\n' ' ')"
    else
        TORCH_REQS="'$TORCH_SPEC' '$TORCHVISION_SPEC'"
    fi
    timed pip_torch in_root "$WORK/venv/bin/pip install $FL $TORCH_REQS"
    # as docs/raspberry-pi.md says (a copy, not -e: the root is a test bed); pytest for the test subset
    timed pip_maskwatch in_root "$WORK/venv/bin/pip install $FL $WORK/maskwatch pytest"
    in_root "$WORK/venv/bin/pip list 2>/dev/null | grep -i -E '^(torch|torchvision|opencv[-a-z]*|numpy|maskwatch) '" \
        | tee "$RESULTS/pip_list_aarch64.txt"
    mark venv
fi
if want venv; then
    # opencv-python (not -headless) needs libGL.so.1, which a headless Pi image may lack
    if ! in_root "$WORK/venv/bin/python -c 'import cv2' 2>/tmp/cv2err"; then
        cat "$ROOT/tmp/cv2err" >&2
        if grep -q libGL "$ROOT/tmp/cv2err"; then
            echo "NOTE: cv2 needs libGL (the install pulled opencv-python, not -headless): installing libgl1 in the root" \
                | tee -a "$RESULTS/problems.txt"
            in_root 'apt-get install -y -q --no-install-recommends libgl1'
        fi
    fi
fi

if want engine; then
    log "(a) quantized engines"
    timed engine in_root "cd /tmp && $WORK/venv/bin/python -c '
import platform, torch, cv2
from maskwatch.models.int8 import select_engine
print(\"machine\", platform.machine(), \"torch\", torch.__version__, \"cv2\", cv2.__version__)
print(\"supported_engines\", torch.backends.quantized.supported_engines)
print(\"select_engine\", select_engine())
'" | tee "$RESULTS/engine_aarch64.txt"
fi

if want pytest; then
    log "(b) fast pytest subset"
    # the two benchmark tests time fp32 vs int8 and Faster R-CNN: > 8 min each under qemu and meaningless there
    TESTS="${TESTS:-tests/test_types_config.py tests/test_track.py tests/test_pipeline.py tests/test_quantize.py \
        tests/test_weights.py tests/test_capture.py tests/test_events.py \
        --deselect tests/test_quantize.py::test_bench_writes_json \
        --deselect tests/test_quantize.py::test_seed_frcnn_timing_runs_offline}"
    timed pytest in_root "cd $WORK/maskwatch && timeout $PYTEST_TIMEOUT $WORK/venv/bin/python -m pytest -q -p no:cacheprovider \
        --durations=10 -m 'not slow' $TESTS" 2>&1 | tee "$RESULTS/pytest_aarch64.txt" || true
fi

if want run; then
    log "(c) maskwatch run on the ${FRAMES}-frame clip, peak RSS by GNU time"
    in_root "rm -f $WORK/results/ev.jsonl"
    timed run in_root "cd $WORK/results && /usr/bin/time -v -o $WORK/results/run_time_aarch64.txt \
        $WORK/venv/bin/maskwatch run --source $WORK/inputs/clip.mp4 --events $WORK/results/ev.jsonl \
        --output $WORK/results/out.mp4 --detections $WORK/results/det_aarch64.jsonl $CONFIG_ARG" \
        2>&1 | tee "$RESULTS/run_aarch64.log" || true
    grep -E 'Maximum resident|Elapsed' "$RESULTS/run_time_aarch64.txt" || true
fi

if want eval; then
    log "(d) maskwatch eval on $EVAL_N val images"
    timed eval in_root "cd $WORK/results && $WORK/venv/bin/maskwatch eval --data $WORK/inputs/voc \
        --split $WORK/inputs/voc/val_small.txt --json $WORK/results/eval_aarch64.json $CONFIG_ARG" \
        2>&1 | tee "$RESULTS/eval_aarch64.log" || true
fi

if want compare; then
    log "int8 outputs on the same frames: aarch64 (emulated) vs the host"
    cp "$HERE/compare_arch.py" "$ROOT$WORK/compare_arch.py"
    timed compare_aarch64 in_root "cd /tmp && $WORK/venv/bin/python $WORK/compare_arch.py --video $WORK/inputs/clip.mp4 \
        --frames $COMPARE_N --images $WORK/inputs/voc/images --out $WORK/results/arch_aarch64.json"
fi

if want installpi; then
    log "the Pi install of docs/raspberry-pi.md: deploy/install-pi.sh in the root, then the service's command as its user"
    # install-pi.sh installs from the folder it lives in: the repo copy. No systemd runs in a chroot, so the unit is
    # installed but not started; its ExecStart is run here by hand as the service user, as systemd would
    # (StateDirectory= makes /var/lib/maskwatch owned by the user; the source is the clip, copied there).
    timed install_pi in_root "bash $WORK/maskwatch/deploy/install-pi.sh $WORK/inputs/clip.mp4" \
        2>&1 | tee "$RESULTS/install_pi.log" || true
    timed service_run in_root "set -e
        install -d -o maskwatch -g maskwatch -m 755 /var/lib/maskwatch
        . /etc/maskwatch/maskwatch.env
        install -o maskwatch -m 644 \$MASKWATCH_SOURCE /var/lib/maskwatch/clip.mp4
        rm -f /var/lib/maskwatch/events.jsonl
        cd /var/lib/maskwatch
        runuser -u maskwatch -- env PYTHONUNBUFFERED=1 /opt/maskwatch/venv/bin/maskwatch run \
            --source /var/lib/maskwatch/clip.mp4 --config /etc/maskwatch/pi.yaml \
            --events /var/lib/maskwatch/events.jsonl --no-progress
        stat -c '%U %a %n' /etc/maskwatch/maskwatch.env /etc/maskwatch/pi.yaml /etc/systemd/system/maskwatch.service \
            /var/lib/maskwatch/events.jsonl
        echo events: \$(wc -l </var/lib/maskwatch/events.jsonl) lines" 2>&1 | tee "$RESULTS/service_run.log" || true
fi

umount_root

if want x86; then
    log "host (x86) reference: same int8 outputs, same run command, peak RSS"
    cd "$ROOT$WORK/results"
    # x86 engine (what x86 users get), qnnpack on x86 (the ARM kernels' reference), fp32 (how far int8 is anyway)
    for variant in x86 x86_qnnpack x86_fp32; do
        case $variant in
            x86) extra=() ;;
            x86_qnnpack) extra=(--engine qnnpack) ;;
            x86_fp32) extra=(--precision fp32) ;;
        esac
        timed "compare_$variant" "$HOST_PY" "$HERE/compare_arch.py" --video "$ROOT$WORK/inputs/clip.mp4" --frames "$COMPARE_N" \
            --images "$ROOT$WORK/inputs/voc/images" --out "$RESULTS/arch_$variant.json" "${extra[@]}" 2>&1 | { grep -v DEBUG || true; }
    done
    rm -f "$RESULTS/ev_x86.jsonl"
    HOST_BIN="$(dirname "$HOST_PY")"
    timed run_x86 /usr/bin/time -v -o "$RESULTS/run_time_x86.txt" "$HOST_BIN/maskwatch" run \
        --source "$ROOT$WORK/inputs/clip.mp4" --events "$RESULTS/ev_x86.jsonl" --output "$RESULTS/out_x86.mp4" \
        --detections "$RESULTS/det_x86.jsonl" ${CONFIG_ARG:+--config "$REPO/configs/pi.yaml"} 2>&1 | tee "$RESULTS/run_x86.log" || true
    timed eval_x86 "$HOST_BIN/maskwatch" eval --data "$ROOT$WORK/inputs/voc" --split "$ROOT$WORK/inputs/voc/val_small.txt" \
        --json "$RESULTS/eval_x86.json" ${CONFIG_ARG:+--config "$REPO/configs/pi.yaml"} 2>&1 | tee "$RESULTS/eval_x86.log" || true
    {
        echo "### aarch64 qnnpack vs x86 qnnpack (same kernels, other CPU and torch build)"
        "$HOST_PY" "$HERE/compare_arch.py" --compare "$RESULTS/arch_x86_qnnpack.json" "$RESULTS/arch_aarch64.json" || true
        echo; echo "### aarch64 qnnpack vs x86 engine x86 (what each platform runs)"
        "$HOST_PY" "$HERE/compare_arch.py" --compare "$RESULTS/arch_x86.json" "$RESULTS/arch_aarch64.json" --tolerance cross-engine || true
        echo; echo "### for scale: x86 int8 (engine x86) vs x86 fp32"
        "$HOST_PY" "$HERE/compare_arch.py" --compare "$RESULTS/arch_x86_fp32.json" "$RESULTS/arch_x86.json" --tolerance cross-engine || true
        echo; echo "### for scale: aarch64 int8 (qnnpack) vs x86 fp32"
        "$HOST_PY" "$HERE/compare_arch.py" --compare "$RESULTS/arch_x86_fp32.json" "$RESULTS/arch_aarch64.json" --tolerance cross-engine || true
    } | tee "$RESULTS/agreement.txt"
    echo "peak RSS (kB): aarch64 $(awk -F': ' '/Maximum resident/ {print $2}' "$RESULTS/run_time_aarch64.txt" 2>/dev/null)" \
        " x86 $(awk -F': ' '/Maximum resident/ {print $2}' "$RESULTS/run_time_x86.txt")"
fi
log "done; results in $RESULTS"
exit 0
}
