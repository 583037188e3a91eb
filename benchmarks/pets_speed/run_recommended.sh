#!/usr/bin/env bash
# The recommended planners of hyperparams/pets.yml vs mbrl-lib 0.2.0's CEM at the paper configuration, one thread,
# on the shapes (and known reward / termination) of Pendulum-v1, InvertedPendulum-v5 and Reacher-v5. From anywhere:
#   bash benchmarks/pets_speed/run_recommended.sh   # ROUNDS=3 interleaved rounds; per round and env: mbrl-lib paper CEM
#                                                   # and our identical-config CEM (N=5 timed actions each after WARMUP=1)
#                                                   # and our recommended YAML planner (N_REC=30 after WARMUP_REC=3)
#   ENVS="Reacher-v5" ROUNDS=1 N=2 bash benchmarks/pets_speed/run_recommended.sh   # a quick check
# Then the machine's matmul floor (recommended.py floor) and the table (recommended.py table, also in OUT/table.md).
#   bash benchmarks/pets_speed/run_recommended.sh learning   # the learning runs of the recommended YAML sections
#       (benchmarks.pets_learning.run_pets, seeds SEEDS="0 1 2"): Pendulum-v1 and InvertedPendulum-v5 for their
#       n_timesteps (1000, 3000), Reacher-v5 for REACHER_STEPS=2000 steps (the first 40 of its 300 episodes);
#       JSON and logs in OUT/learning/, table: python -m benchmarks.pets_speed.recommended learning. LEARN_ENVS
#       chooses the envs. It does not empty OUT and skips a run whose JSON exists.
#   bash benchmarks/pets_speed/run_recommended.sh learning-paper   # the same runs with the paper's CEM and members
#       (timing.CONFIG) in place of the sections' planner: the reference for "equal final returns"; OUT/learning_paper/.
# Needs the mbrl-lib venv benchmarks/pets_speed/.venv-mbrl (setup_mbrl_venv.sh; or MBRL_PY) and a Python with
# sb3_bayes installed (PY, default python). OUT (default benchmarks/pets_speed/results_recommended) is emptied of JSON
# files first. CORE pins every process to that core (taskset).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
MBRL_PY=${MBRL_PY:-benchmarks/pets_speed/.venv-mbrl/bin/python}
ENVS=${ENVS:-"Pendulum-v1 InvertedPendulum-v5 Reacher-v5"}
ROUNDS=${ROUNDS:-3}
N=${N:-5}
WARMUP=${WARMUP:-1}
N_REC=${N_REC:-30}
WARMUP_REC=${WARMUP_REC:-3}
OUT=${OUT:-benchmarks/pets_speed/results_recommended}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

if [[ "${1:-timing}" == learning || "${1:-timing}" == learning-paper ]]; then
  dir="$OUT/learning"
  if [[ $1 == learning-paper ]]; then dir="$OUT/learning_paper"; fi
  mkdir -p "$dir"
  for env in ${LEARN_ENVS:-Pendulum-v1 InvertedPendulum-v5 Reacher-v5}; do
    steps=()
    if [[ $env == Reacher-v5 ]]; then steps=(--steps "${REACHER_STEPS:-2000}"); fi
    overrides=()
    if [[ $1 == learning-paper ]]; then
      # The paper's planner and members (timing.CONFIG) in place of the section's: CEM, 500 candidates, 50 elites,
      # 5 iterations, 20 TSinf particles, 5 x [200, 200, 200]; every other entry (epochs, weight decay) as the section.
      decay=5e-5
      if [[ $env == Reacher-v5 ]]; then decay="[2.5e-4, 5e-4, 5e-4, 7.5e-4]"; fi
      overrides=(--set planner=cem --set popsize=500 --set num_elites=50 --set cem_iters=5 --set cem_alpha=0.1
        --set n_particles=20 --set plan_horizon=15 --set propagation=TSinf --set planning_threads=1
        --set "policy_kwargs=dict(model_type='PE', ensemble_size=5, net_arch=[200, 200, 200], weight_decay=$decay)")
    fi
    for seed in ${SEEDS:-0 1 2}; do
      if [[ -f "$dir/pets_${env}_s$seed.json" ]]; then continue; fi  # finished earlier: keep it
      echo "$1 $env seed $seed" >&2
      "$PY" -m benchmarks.pets_learning.run_pets --env "$env" --seed "$seed" "${steps[@]}" "${overrides[@]}" \
        --out "$dir/pets_${env}_s$seed.json" > "$dir/pets_${env}_s$seed.log"
    done
  done
  exit 0
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.json
PIN=()
if [[ -n "${CORE:-}" ]]; then PIN=(taskset -c "$CORE"); fi

{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread|L2|L3'; echo "avx512/amx flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E 'avx512|amx' | tr '\n' ' ')"; } > "$OUT/lscpu.txt" || true
uptime > "$OUT/uptime_before.txt"

# Interleave implementations and envs round by round so that load from other work on the shared cores hits all alike.
for r in $(seq 1 "$ROUNDS"); do
  for env in $ENVS; do
    echo "round $r/$ROUNDS $env" >&2
    "${PIN[@]}" "$MBRL_PY" -m benchmarks.pets_speed.bench_mbrl --env "$env" --n-actions "$N" --n-warmup "$WARMUP" \
      --out "$OUT/mbrl_paper_${env}_r$r.json" > /dev/null
    "${PIN[@]}" "$PY" -m benchmarks.pets_speed.bench_ours --env "$env" --config paper --dtype float32 --n-actions "$N" \
      --n-warmup "$WARMUP" --out "$OUT/ours_paper_${env}_r$r.json" > /dev/null
    "${PIN[@]}" "$PY" -m benchmarks.pets_speed.bench_ours --env "$env" --config recommended --dtype float32 \
      --n-actions "$N_REC" --n-warmup "$WARMUP_REC" --out "$OUT/ours_recommended_${env}_r$r.json" > /dev/null
  done
done
"${PIN[@]}" "$PY" -m benchmarks.pets_speed.recommended floor --out "$OUT/floor.json" > /dev/null

uptime > "$OUT/uptime_after.txt"
"$PY" -m benchmarks.pets_speed.recommended table "$OUT" | tee "$OUT/table.md"
