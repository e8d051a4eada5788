#!/bin/bash
# Table VI on the synthetic world: two trained baseline_synthetic models (seeds 0 and 1; EPOCHS=12 or 24 picks the runs).
# Per seed s: the model of seed s, the ensemble partner the other seed's model.
set -e
cd "$(dirname "$0")/../../.."
OUT=experiments/vehiclenet/table6${SUFFIX:-}
mkdir -p $OUT
for s in 0 1; do
  o=$((1 - s))
  A=outputs/h10/base${EPOCHS:-24}_s$s; B=outputs/h10/base${EPOCHS:-24}_s$o
  nice -n 10 python -m vreid_lightning.evaluate $A $B --steps ensemble,qe,camera_verification,rerank --cumulative --out $OUT/seed$s > /dev/null
  for step in qe camera_verification rerank time_window aqe dba; do
    nice -n 10 python -m vreid_lightning.evaluate $A --steps $step --out $OUT/seed$s/alone_$step > /dev/null
  done
  nice -n 10 python -m vreid_lightning.evaluate $A $B --steps ensemble,qe,camera_verification,time_window,rerank --cumulative --out $OUT/seed$s/with_time_window > /dev/null
  nice -n 10 python -m vreid_lightning.evaluate $A $B --steps ensemble,camera_verification,rerank --cumulative --out $OUT/seed$s/no_qe > /dev/null
done
echo done
