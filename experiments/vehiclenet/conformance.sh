#!/usr/bin/env bash
# Conformance of the vehiclenet_*_authors experiments with the VehicleNet authors' released code, per FORMAT:
# a random-weight stand-in in their file format (../shared/authors-code/make_standins.py), imported with
# `python -m vreid_lightning.convert`, tested by the suite with train=false ckpt_path=..., and the suite's
# features.npz judged by check_features.py (exit 0: max |diff| <= 1e-4 after L2 normalisation, float64 reference).
# The test images: a small synthetic world (VeRi layout for vehiclenet_veri_authors, CityFlow layout for
# vehiclenet_cityflow_authors) whose every image is rewritten as a PNG of exactly the size the judge prints
# (round(1.1 x inputsize) square), under the layout's own file names (PIL reads the content, not the
# extension), so that resizing is the identity on both sides.
#   experiments/vehiclenet/conformance.sh vehiclenet-resnet50 [WORKDIR]      (from the repository root)
#   FORMAT: vehiclenet-resnet50 (inputsize 256, stride 1), vehiclenet-densenet121 (256, stride 2: the judge's
#   default, no DenseNet model is released), vehiclenet-seresnext101 (inputsize 160 to save time; 384 released).
#   STRIDE=1|2 overrides the format's stride (stand-in, import, test and judge alike); MS=1,0.9,0.8 tests with those
#   scales (model.evaluation.scales, the authors' sqrt-compounded mode) and judges with --ms.
set -euo pipefail
FMT="$1"; WORK="${2:-/tmp/vnet-conformance}/$FMT"
JUDGE="${AUTHORS_CODE:-../shared/authors-code}"   # the judge folder (AUTHORS_CODE=... from a git worktree)
[ -d "$JUDGE" ] || { echo "no judge folder $JUDGE: set AUTHORS_CODE=/path/to/shared/authors-code" >&2; exit 2; }
PY="${PYTHON:-python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}" PYTHONPATH="$PWD"
case "$FMT" in
  vehiclenet-resnet50)     INPUT=256; STRIDE=${STRIDE:-1}; BACKBONE=resnet50_authors; SE=""; LAYOUT=veri ;;
  vehiclenet-densenet121)  INPUT=256; STRIDE=${STRIDE:-2}; BACKBONE=densenet121_authors; SE=""; LAYOUT=veri ;;
  vehiclenet-seresnext101) INPUT=160; STRIDE=${STRIDE:-1}; BACKBONE=se_resnext101_32x4d_authors; SE="--inputsize 160"
                           LAYOUT=cityflow ;;
  *) echo "unknown FORMAT $FMT" >&2; exit 2 ;;
esac
SIZE=$("$PY" -c "print(round(1.1 * $INPUT))")
rm -rf "$WORK"; mkdir -p "$WORK/standin"
"$PY" -m vreid_lightning.synth --layout "$LAYOUT" --out "$WORK/world" --ids 16 --images-per-id 4 --image-size 96 \
  --seed 5 --workers 0 --quiet
"$PY" - "$WORK/world" "$SIZE" <<'EOF'
import sys
from pathlib import Path
from PIL import Image
root, size = Path(sys.argv[1]), int(sys.argv[2])
for p in sorted(root.rglob("*.jpg")):
    with Image.open(p) as im:
        im.convert("RGB").resize((size, size), Image.BICUBIC).save(p, format="PNG")
EOF
"$PY" "$JUDGE/make_standins.py" "$FMT" "$WORK/standin" --stride "$STRIDE"
printf 'inputsize: %s\nh: %s\nw: %s\nstride: %s\npool: avg\nPCB: false\nuse_dense: %s\nuse_SE: %s\n' \
  "$INPUT" "$INPUT" "$INPUT" "$STRIDE" "$([ "$FMT" = vehiclenet-densenet121 ] && echo true || echo false)" \
  "$([ "$FMT" = vehiclenet-seresnext101 ] && echo true || echo false)" > "$WORK/standin/opts.yaml"
"$PY" -m vreid_lightning.convert "$FMT" "$WORK/standin/net_last.pth" "$WORK/imported.ckpt" --opts "$WORK/standin/opts.yaml"
"$PY" -m vreid_lightning +experiment="vehiclenet_${LAYOUT}_authors" backbone="$BACKBONE" backbone.pretrained=false \
  backbone.last_stride="$STRIDE" inputsize="$INPUT" trainer=cpu logger=none data.root="$WORK/world" \
  data.num_workers=0 data.pin_memory=false data.eval_batch_size=8 model.figures=null \
  source_set=none run_stages=[stage2] train=false ckpt_path="$WORK/imported.ckpt" paths.output_dir="$WORK/run" \
  hydra.run.dir="$WORK/run" ${MS:+"model.evaluation.scales=[$MS]"}
NPZ="$(find "$WORK/run" -name features.npz | head -1)"
# shellcheck disable=SC2086
"$PY" "$JUDGE/check_features.py" "$FMT" --weights "$WORK/standin/net_last.pth" --features "$NPZ" \
  --root "$WORK/world" --stride "$STRIDE" $SE ${MS:+--ms "$MS"}
