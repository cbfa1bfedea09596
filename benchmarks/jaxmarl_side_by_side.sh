#!/bin/bash
# QMIX on MPE simple_spread with JaxMARL's settings (ql_rnn_mpe: 26-step episodes, 2.05M env steps),
# JaxMARL's own QMIX (every part jit-compiled) and `kqmix train --preset jax_mpe_spread`, one seed after the
# other, alternating sides, so machine noise hits both: the greedy return and the env steps/s of each run.
#
#   JAXMARL_DIR=<JaxMARL checkout> JAXMARL_PYTHON=<its venv's python> SEEDS="0 1 2" \
#     benchmarks/jaxmarl_side_by_side.sh OUT_DIR
#
# JaxMARL: `benchmarks/jaxmarl_qmix.py` writes OUT_DIR/jaxmarl/SEED.json (timed after compilation, its
# last greedy test of 512 episodes). kqmix: run directory OUT_DIR/kqmix/SEED, then `kqmix evaluate` over
# 512 greedy episodes; its env steps/s leaves out the first log interval (tracing, XLA compilation) and,
# like JaxMARL's, includes a greedy test of 512 episodes every 5% of the run. Both returns are the team
# sum over the 26-step episode. Run from the project root.
set -eu
OUT=${1:?an output directory}
: "${JAXMARL_DIR:?a JaxMARL checkout (with baselines/QLearning)}" "${JAXMARL_PYTHON:?the python of the JaxMARL venv}"
T=${T_MAX:-2050000}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/jaxmarl" "$OUT/kqmix"
OUT=$(cd "$OUT" && pwd)
for seed in ${SEEDS:-0 1 2}; do
  (cd "$JAXMARL_DIR/baselines/QLearning" && "$JAXMARL_PYTHON" "$HERE/jaxmarl_qmix.py" "$OUT/jaxmarl/$seed.json" \
     +alg=ql_rnn_mpe alg.TOTAL_TIMESTEPS=$T WANDB_MODE=disabled SEED=$seed > "$OUT/jaxmarl/$seed.log" 2>&1)
  run="$OUT/kqmix/$seed"
  TF_CPP_MIN_LOG_LEVEL=3 ${KQMIX:-kqmix} train --preset jax_mpe_spread --set env_key=mpe:simple_spread_v3:max_steps=26 \
    --set t_max=$T --set epsilon_anneal_time=$((T / 10)) --set test_interval=$((T / 20)) --set test_nepisode=512 \
    --set log_interval=$((T / 20)) --set seed=$seed --quiet --run-dir "$run" > "$run.log" 2>&1
  TF_CPP_MIN_LOG_LEVEL=3 ${KQMIX:-kqmix} evaluate "$run" --episodes 512 >> "$run.log" 2>&1
  python3 - "$OUT" "$seed" <<'PY'
import json, sys
out, seed = sys.argv[1], sys.argv[2]
jm = json.load(open(f"{out}/jaxmarl/{seed}.json"))
rows = [json.loads(line) for line in open(f"{out}/kqmix/{seed}/metrics.jsonl")]
kq_speed = (rows[-1]["t_env"] - rows[1]["t_env"]) / (rows[-1]["time"] - rows[1]["time"])
kq_return = json.load(open(f"{out}/kqmix/{seed}/evaluation.json"))["return_mean"]
print(f"seed {seed}: JaxMARL {jm['env_steps_per_s']:,.0f} env steps/s, return {jm['final_test']['returned_episode_returns']:.2f}"
      f" | kqmix {kq_speed:,.0f} env steps/s ({kq_speed / jm['env_steps_per_s']:.2f}x), return {kq_return:.2f}")
PY
done
