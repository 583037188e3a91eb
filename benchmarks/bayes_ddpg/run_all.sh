#!/usr/bin/env bash
# Every run of the BayesianDDPG benchmark, one at a time on one thread, then the tables. From anywhere:
#   bash benchmarks/bayes_ddpg/run_all.sh [PART...]   (default: 1 2 3 4 5 6 7 summary)
#   nohup bash benchmarks/bayes_ddpg/run_all.sh 5 > benchmarks/bayes_ddpg/results/run_part5.log 2>&1 &
# Parts 1-7 are the runs of the former run_all.sh and run_part2.sh ... run_part7.sh, in the order they ran (README.md,
# "Commands"); a run whose JSON exists is skipped, so the script resumes where it stopped and running every part
# makes each run of results/ once. PY: the Python to use (default python).
#   1  learning, Pendulum-v1, 3 seeds x 3 algorithms, 5000 steps; forgetting none / ewc / vcl, seed 0;
#      learning, InvertedPendulum-v5, 3 seeds x 3 algorithms, 5000 steps
#   2  forgetting ewc seed 0 (the corrected actor Fisher); learning, InvertedPendulum-v5 (as in 1)
#   3  learning, InvertedPendulum-v5 TD3 / DDPG seed 0; forgetting ewc with lambda 1e6, seed 0; InvertedPendulum-v5
#      seeds 1 and 2
#   4  forgetting none-fixedN and ewc-fixedN, seed 0 (after the KL data-count fix of commit df8002a)
#   5  learning, InvertedPendulum-v5 seed 2; InvertedPendulum-v5 at 10000 steps, seeds 0-2 (results/learning_10k);
#      forgetting none-fixedN and ewc-fixedN seeds 1 and 2; ewc-actor-critic seed 0
#   6  forgetting ewc-actor-critic seeds 1 and 2
#   7  forgetting vcl seeds 1 and 2
#   summary  results/tables.md, the CSVs and the plots
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
R=benchmarks/bayes_ddpg/results
HP='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}}'
HP_AC='{"learning_starts": 1000, "gamma": 0.98, "buffer_size": 200000, "policy_kwargs": {"net_arch": [64, 64]}, "ewc_modules": ["actor", "critic"]}'
ALGOS="bayes_ddpg td3 ddpg"

learn() {  # algo env seed out [extra arguments]
  if [ -f "$4/$1_$2_s$3.json" ]; then echo "skip $4/$1_$2_s$3.json"; return 0; fi
  "$PY" -m benchmarks.bayes_ddpg.run_learning --algo "$1" --env "$2" --seed "$3" --out "$4" "${@:5}"
}
forget() {  # variant consolidation seed hyperparams [--ewc-lambda L]
  local name="bayes_ddpg_$1_s$3"
  if [ -f "$R/forgetting/$name.json" ]; then echo "skip $R/forgetting/$name.json"; return 0; fi
  "$PY" -m benchmarks.continual bayes_ddpg --algo bayes_ddpg --sequence pendulum-gravity --n-timesteps 3000 \
    --hyperparams "$4" --consolidation "$2" "${@:5}" --seed "$3" --n-eval-episodes 5 --out $R/forgetting --name "$name"
}
learn_all() {  # env out seeds [extra arguments]
  for seed in $3; do for algo in $ALGOS; do learn $algo "$1" "$seed" "$2" "${@:4}"; done; done
}

for part in ${*:-1 2 3 4 5 6 7 summary}; do
  uptime
  case "$part" in
    1)
      learn_all Pendulum-v1 $R/learning "0 1 2"
      for c in none ewc vcl; do forget $c $c 0 "$HP" --ewc-lambda 10000; done
      learn_all InvertedPendulum-v5 $R/learning "0 1 2" ;;
    2)
      forget ewc ewc 0 "$HP" --ewc-lambda 10000
      learn_all InvertedPendulum-v5 $R/learning "0 1 2" ;;
    3)
      for algo in td3 ddpg; do learn $algo InvertedPendulum-v5 0 $R/learning; done
      forget ewc-lambda1e6 ewc 0 "$HP" --ewc-lambda 1000000
      learn_all InvertedPendulum-v5 $R/learning "1 2" ;;
    4)
      for c in none ewc; do forget $c-fixedN $c 0 "$HP" --ewc-lambda 10000; done ;;
    5)
      learn_all InvertedPendulum-v5 $R/learning 2
      learn_all InvertedPendulum-v5 $R/learning_10k "0 1 2" --n-timesteps 10000
      for seed in 1 2; do
        forget none-fixedN none $seed "$HP" --ewc-lambda 10000
        forget ewc-fixedN ewc $seed "$HP" --ewc-lambda 10000
      done
      forget ewc-actor-critic ewc 0 "$HP_AC" --ewc-lambda 10000 ;;
    6)
      for seed in 1 2; do forget ewc-actor-critic ewc $seed "$HP_AC" --ewc-lambda 10000; done ;;
    7)
      for seed in 1 2; do forget vcl vcl $seed "$HP"; done ;;
    summary)
      "$PY" -m benchmarks.bayes_ddpg.summarize > /dev/null ;;
    *)
      echo "unknown part: $part (1 2 3 4 5 6 7 summary)" >&2; exit 2 ;;
  esac
done
uptime
