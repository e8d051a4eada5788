#!/bin/bash
# Table VI on the synthetic worlds, from the saved test features of trained VehicleNet models (stage II):
#   CityFlow-layout world (the paper's Table VI): two +experiment=vehiclenet_synthetic runs, seeds 0 and 1;
#   VeRi-layout world (timestamps: the time window): two +experiment=vehiclenet_synthetic_veri runs.
# Per seed s: the model of seed s, its ensemble partner the other seed's model. The camera model for camera
# verification: +experiment=camera_synthetic_cityflow (the CityFlow world's cameras).
#   CF=RUNS_DIR VR=RUNS_DIR CAM=CAMERA_RUN bash experiments/vehiclenet/table6/run_table6.sh
set -e
cd "$(dirname "$0")/../../.."
OUT=experiments/vehiclenet/table6
CF=${CF:-outputs/h13/final}          # vehiclenet_s0, vehiclenet_s1 (vehiclenet_synthetic, seeds 0 and 1)
VR=${VR:-outputs/h13/t3}             # veri_s0, veri_s1 (vehiclenet_synthetic_veri, seeds 0 and 1)
CAM=${CAM:-outputs/h10/camera_cityflow20}
EV="nice -n 10 python -m vreid_lightning.evaluate"
CAMF="--camera-features $CAM --set camera_verification.source=features --set camera_verification.n_clusters=40"
for s in 0 1; do
  o=$((1 - s))
  A=$CF/vehiclenet_s$s/stages/stage2; B=$CF/vehiclenet_s$o/stages/stage2
  [ -f $A/crop_features.npz ] || $EV $A --steps crop --extract-crops dataset --out /tmp/table6_crop_$s > /dev/null
  CROP="--crop $A/crop_features.npz $B/crop_features.npz"
  [ -f $B/crop_features.npz ] || $EV $B --steps crop --extract-crops dataset --out /tmp/table6_crop_$o > /dev/null
  $EV $A $B $CROP $CAMF --steps crop,ensemble,qe,camera_verification,rerank --cumulative --out $OUT/cityflow/seed$s > /dev/null
  $EV $A $B $CROP $CAMF --steps crop,ensemble,camera_verification,rerank --cumulative --out $OUT/cityflow/seed$s/no_qe > /dev/null
  $EV $A --crop $A/crop_features.npz --steps crop --out $OUT/cityflow/seed$s/alone_crop > /dev/null
  $EV $A $CAMF --steps camera_verification --out $OUT/cityflow/seed$s/alone_camera_verification > /dev/null
  $EV $A --steps camera_verification --out $OUT/cityflow/seed$s/alone_camera_labels > /dev/null
  for step in qe rerank aqe dba; do
    $EV $A --steps $step --out $OUT/cityflow/seed$s/alone_$step > /dev/null
  done
  V=$VR/veri_s$s/stages/stage2; W=$VR/veri_s$o/stages/stage2
  $EV $V $W --steps ensemble,camera_verification,time_window,rerank --cumulative --out $OUT/veri/seed$s > /dev/null
  for step in time_window rerank; do
    $EV $V --steps $step --out $OUT/veri/seed$s/alone_$step > /dev/null
  done
done
echo done
