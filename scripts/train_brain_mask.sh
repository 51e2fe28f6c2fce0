#!/usr/bin/env bash
# Reproduce the shipped brain-mask model (src/medvlab/seg/models/brain_mask_mni152.pt) and its
# Colin27 score in docs/segmentation.md. CPU, about 3 minutes on 2 cores. Needs: apt-get install mricron-data
set -euo pipefail
DATA=${DATA:-data/brain}
RUN=${RUN:-runs/brain-mask}
medvlab seg sample-data "$DATA"
medvlab seg train --images "$DATA/train/mni152_t1.nii.gz" --labels "$DATA/train/mni152_brain.nii.gz" \
  --label-names brain --binarize --synth-head --largest-component \
  --net unet --width 8 --patch 64 --spacing 2 \
  --epochs 60 --steps-per-epoch 8 --samples 2 --lr 2e-3 --val-every 5 --seed 0 --output "$RUN"
medvlab seg eval --model "$RUN/best.pt" --images "$DATA/test/colin27_t1.nii.gz" \
  --labels "$DATA/test/colin27_brain.nii.gz" --output "$RUN/colin27"
