#!/usr/bin/env bash
# The exact runs behind results/: one process at a time (the machine's 2 cores are shared), one torch thread each.
# Usage (from anywhere): bash benchmarks/dvrl/run_all.sh [all|mh|ppo_mh|novel|speed|reference|long|references|belief]
#   all     = mh, ppo_mh, novel (in this order: the most important results first), then summarize.py and plot.py
#   mh      DVRL and its RNN baseline on the three Mountain Hike noise levels, seeds 0-2
#   ppo_mh  RecurrentPPO on the three Mountain Hike noise levels, seeds 0-2
#   novel   CartPoleNoVel-v1 and PendulumNoVel-v1, all three methods, seed by seed
#   speed   steps per CPU second (results/speed.json)
#   reference  the observation-free returns on Mountain Hike (results/open_loop_reference.json)
#   long    a longer budget for DVRL and RNN on LONG_ENV (LONG_STEPS, LONG_SEEDS), tagged _<k>k; the results/ runs:
#           LONG_ENV=MountainHikeNoise0p5-v0 LONG_STEPS=100000 LONG_SEEDS="0 1 2" bash benchmarks/dvrl/run_all.sh long
#   references  oracle / memoryless / blind references per noise level (results/belief/references.json, references.py)
#   belief  the grid of issue #14 into BELIEF_OUT (results/belief): BELIEF_METHODS (dvrl rnn ppo_lstm) x BELIEF_ENVS
#           (Mountain Hike at noise 0, 0.3, 0.5, 1.0; noisy-position CartPole at 0.1, 0.2) x BELIEF_SEEDS (0-4),
#           BELIEF_STEPS (500000) each, every run evaluated on EVAL_EPISODES (100) fixed-seed episodes and its ELBO /
#           explained variance / effective sample size logged every TRAIN_LOG_EVERY (5000) steps; then the
#           references (if missing), summarize.py and plot.py on BELIEF_OUT. Not part of `all` (many CPU hours).
#           Smoke test: BELIEF_OUT=/tmp/belief BELIEF_STEPS=2000 BELIEF_SEEDS=0 EVAL_EPISODES=2 TRAIN_LOG_EVERY=400 \
#             REF_ARGS="--episodes 5 --search-episodes 2" bash benchmarks/dvrl/run_all.sh belief
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
BELIEF_OUT=${BELIEF_OUT:-$R/belief}
BELIEF_STEPS=${BELIEF_STEPS:-500000}
BELIEF_SEEDS=${BELIEF_SEEDS:-0 1 2 3 4}
BELIEF_METHODS=${BELIEF_METHODS:-dvrl rnn ppo_lstm}
BELIEF_ENVS=${BELIEF_ENVS:-MountainHikeNoise0p5-v0 MountainHikeNoise1-v0 MountainHikeNoise0p3-v0 MountainHikeNoise0-v0 NoisyPositionCartPoleNoise0p1-v0 NoisyPositionCartPoleNoise0p2-v0}
EVAL_EPISODES=${EVAL_EPISODES:-100}
TRAIN_LOG_EVERY=${TRAIN_LOG_EVERY:-5000}
REF_ARGS=${REF_ARGS:-}

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
if [ "$PHASE" = references ] || [ "$PHASE" = belief ]; then
  mkdir -p "$BELIEF_OUT/logs"
  if [ ! -f "$BELIEF_OUT/references.json" ]; then
    # shellcheck disable=SC2086  # REF_ARGS: several arguments
    "$PY" -m benchmarks.dvrl.references $REF_ARGS --out "$BELIEF_OUT/references.json" > "$BELIEF_OUT/logs/references.log" 2>&1
  fi
fi
if [ "$PHASE" = belief ]; then
  # The most informative runs first: the noisiest Mountain Hike levels, seed by seed, all methods at each.
  for s in $BELIEF_SEEDS; do for e in $BELIEF_ENVS; do for m in $BELIEF_METHODS; do
    out=$BELIEF_OUT/${m}_${e}_s$s.json
    if [ -f "$out" ]; then echo "skip $out"; continue; fi
    echo "$(date -u +%H:%M:%S) start $m $e s$s $BELIEF_STEPS"
    "$PY" -m benchmarks.dvrl.run_zoo --method "$m" --env "$e" --seed "$s" --steps "$BELIEF_STEPS" --out "$out" \
      --eval-episodes "$EVAL_EPISODES" --train-log --train-log-every "$TRAIN_LOG_EVERY" \
      > "$BELIEF_OUT/logs/${m}_${e}_s$s.log" 2>&1 || echo "FAILED $m $e $s (see $BELIEF_OUT/logs/${m}_${e}_s$s.log)"
  done; done; done
  "$PY" -m benchmarks.dvrl.summarize --results "$BELIEF_OUT"
  "$PY" -m benchmarks.dvrl.plot --results "$BELIEF_OUT" --out "$BELIEF_OUT/belief_learning.png" \
    --diagnostics "$BELIEF_OUT/belief_diagnostics.png"
fi
if [ "$PHASE" = all ]; then
  "$PY" -m benchmarks.dvrl.summarize
  "$PY" -m benchmarks.dvrl.plot
fi
