#!/usr/bin/env bash
# The exact runs behind results/: one process at a time (the machine's 2 cores are shared), one torch thread each.
# Usage (from anywhere): bash benchmarks/dvrl/run_all.sh [all|mh|ppo_mh|novel|speed|reference|long]
#   all     = mh, ppo_mh, novel (in this order: the most important results first), then summarize.py and plot.py
#   mh      DVRL and its RNN baseline on the three Mountain Hike noise levels, seeds 0-2
#   ppo_mh  RecurrentPPO on the three Mountain Hike noise levels, seeds 0-2
#   novel   CartPoleNoVel-v1 and PendulumNoVel-v1, all three methods, seed by seed
#   speed   steps per CPU second (results/speed.json)
#   reference  the observation-free returns on Mountain Hike (results/open_loop_reference.json)
#   long    a longer budget for DVRL and RNN on LONG_ENV (LONG_STEPS, LONG_SEEDS), tagged _<k>k; the results/ runs:
#           LONG_ENV=MountainHikeNoise0p5-v0 LONG_STEPS=100000 LONG_SEEDS="0 1 2" bash benchmarks/dvrl/run_all.sh long
# Budgets: MH_STEPS (25000), NOVEL_STEPS (25000). A result file that exists is not run again. PY: the Python to use.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
R=benchmarks/dvrl/results
mkdir -p $R/logs
PHASE=${1:-all}
MH_STEPS=${MH_STEPS:-25000}
LONG_STEPS=${LONG_STEPS:-60000}
LONG_SEEDS=${LONG_SEEDS:-0}
LONG_ENV=${LONG_ENV:-MountainHikeNoise0p2-v0}
NOVEL_STEPS=${NOVEL_STEPS:-25000}
MH_ENVS="MountainHikeNoise0p1-v0 MountainHikeNoise0p2-v0 MountainHikeNoise0p5-v0"

run() {  # method env seed steps [tag of the result file]
  local out=$R/$1_$2_s$3${5:-}.json
  if [ -f "$out" ]; then echo "skip $out"; return; fi
  echo "$(date -u +%H:%M:%S) start $1 $2 s$3 $4"
  "$PY" -m benchmarks.dvrl.run_zoo --method "$1" --env "$2" --seed "$3" --steps "$4" --out "$out" \
    > "$R/logs/$1_$2_s$3${5:-}.log" 2>&1 || echo "FAILED $1 $2 $3 $4 (see $R/logs/$1_$2_s$3${5:-}.log)"
}

if [ "$PHASE" = mh ] || [ "$PHASE" = all ]; then
  # DVRL and its RNN baseline, seed by seed, on every Mountain Hike level
  for s in 0 1 2; do for e in $MH_ENVS; do run dvrl "$e" $s "$MH_STEPS"; run rnn "$e" $s "$MH_STEPS"; done; done
fi
if [ "$PHASE" = ppo_mh ] || [ "$PHASE" = all ]; then
  for s in 0 1 2; do for e in $MH_ENVS; do run ppo_lstm "$e" $s "$MH_STEPS"; done; done
fi
if [ "$PHASE" = novel ] || [ "$PHASE" = all ]; then
  for s in 0 1 2; do for e in CartPoleNoVel-v1 PendulumNoVel-v1; do
    for m in dvrl rnn ppo_lstm; do run $m $e $s "$NOVEL_STEPS"; done
  done; done
fi
if [ "$PHASE" = speed ]; then
  if [ ! -f $R/speed.json ]; then "$PY" -m benchmarks.dvrl.speed --rounds 2 --out $R/speed.json > $R/logs/speed.log 2>&1; fi
fi
if [ "$PHASE" = reference ] && [ ! -f $R/open_loop_reference.json ]; then
  "$PY" -m benchmarks.dvrl.open_loop_reference --out $R/open_loop_reference.json
fi
if [ "$PHASE" = long ]; then
  for s in $LONG_SEEDS; do
    run dvrl "$LONG_ENV" $s "$LONG_STEPS" "_$((LONG_STEPS / 1000))k"
    run rnn "$LONG_ENV" $s "$LONG_STEPS" "_$((LONG_STEPS / 1000))k"
  done
fi
if [ "$PHASE" = all ]; then
  "$PY" -m benchmarks.dvrl.summarize
  "$PY" -m benchmarks.dvrl.plot
fi
