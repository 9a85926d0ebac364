#!/usr/bin/env bash
# What limits TrCAM-V offline (BENCHMARKS.md, "TrCAM-V on the synthetic video benchmark"): the synthetic video
# benchmark, the CAM-family classifier, CAM and Grad-CAM pseudo-labels, TrCAM-V on the image demo's ViT (full
# losses; partial CE only; Grad-CAM pseudo-labels; 128x128 inputs) and on a ViT trained on the frames, each scored
# with `tedloc evaluate` (CorLoc both ways, PxAP). About 1.5 hours on the 2-core CPU machine.
#   VIT=runs/demo/runs/vit OUT=runs/trcamv_study bash scripts/trcamv_offline_study.sh
set -euo pipefail
out="${OUT:-runs/trcamv_study}"
vit="${VIT:-runs/demo/runs/vit}"   # the image demo's ViT (`tedloc demo` makes it)
t="tedloc"
mkdir -p "$out"
$t data synthetic-video --out "$out/data"
$t train --method cam --data "$out/data" --out "$out/cam" --epochs 12 --lr-step 9 --batch-size 32 --workers 1 \
  --frames-per-shot 4
$t cams --run "$out/cam" --data "$out/data" --out "$out/maps_cam"
$t cams --source gradcam --run "$out/cam" --data "$out/data" --out "$out/maps_gradcam"
$t train --method cam --data "$out/data" --out "$out/vit_frames" --arch tedloc_vit_tiny --optimizer adamw --lr 1e-3 \
  --weight-decay 0.05 --epochs 12 --lr-step 10 --batch-size 64 --workers 1 --frames-per-shot 4
common="--classifier-epochs 4 --epochs 10 --lr-step 8 --batch-size 32 --frames-per-shot 4 --lambda-crf 5e-6 \
  --sigma-xy 28 --crf-scale 0.5 --fg-count 10 --bg-count 10"
# shellcheck disable=SC2086
{
  $t train --method trcamv --data "$out/data" --out "$out/trcamv" --cams "$out/maps_cam" --encoder-run "$vit" $common
  $t train --method trcamv --data "$out/data" --out "$out/trcamv_pal" --cams "$out/maps_cam" --encoder-run "$vit" \
    $common --lambda-crf 0 --lambda-size 0
  $t train --method trcamv --data "$out/data" --out "$out/trcamv_gradcam" --cams "$out/maps_gradcam" \
    --encoder-run "$vit" $common
  $t train --method trcamv --data "$out/data" --out "$out/trcamv_vit_frames" --cams "$out/maps_cam" \
    --encoder-run "$out/vit_frames" $common
  $t train --method trcamv --data "$out/data" --out "$out/trcamv_128" --cams "$out/maps_gradcam" --encoder-run "$vit" \
    --input-size 128 --classifier-epochs 4 --epochs 6 --lr-step 5 --batch-size 32 --frames-per-shot 2 \
    --lambda-crf 4.8e-6 --sigma-xy 57 --crf-scale 0.25 --fg-count 20 --bg-count 20
}
for run in trcamv trcamv_pal trcamv_gradcam trcamv_vit_frames trcamv_128; do
  $t evaluate --run "$out/$run" --data "$out/data" --split test --protocol validation --json "$out/$run.json"
done
for map in cam gradcam gradcam++ smoothgradcam++ xgradcam layercam; do
  $t evaluate --run "$out/cam" --map "$map" --data "$out/data" --split test --protocol validation \
    --json "$out/cam_$map.json"
done
