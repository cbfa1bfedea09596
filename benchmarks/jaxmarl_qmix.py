"""JaxMARL's own QMIX (`baselines/QLearning/qmix_rnn.py`), trained once and written to a JSON file.

Run it with JaxMARL's venv from its `baselines/QLearning` folder (it imports
JaxMARL's `qmix_rnn` and reads its Hydra config there):

    python PATH/TO/benchmarks/jaxmarl_qmix.py OUT.json +alg=ql_rnn_mpe alg.TOTAL_TIMESTEPS=2050000 SEED=0

The whole run is one jit-compiled call; it is timed after compilation. OUT.json
holds the seed, the settings, the env steps, the compile and run seconds, env
steps per second, and JaxMARL's last greedy test (512 episodes,
`returned_episode_returns` averaged over the agents; on MPE that is the team
sum over JaxMARL's 26-step episode, as its `MPELogWrapper` multiplies each
agent's reward by the number of agents). With `WANDB_MODE=disabled` JaxMARL's
training returns no per-update metrics, so there is no curve: logging one would
add a host callback to every update of the timed run.
`benchmarks/jaxmarl_side_by_side.sh` runs it next to kqmix.
"""

import json
import sys
import time
from pathlib import Path

OUT = Path(sys.argv.pop(1)).resolve()
HERE = Path.cwd()  # JaxMARL's baselines/QLearning
sys.path.insert(0, str(HERE))

import hydra  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import qmix_rnn  # noqa: E402  (JaxMARL's, from the working directory)
from omegaconf import OmegaConf  # noqa: E402


@hydra.main(version_base=None, config_path=str(HERE / "config"), config_name="config")
def main(config):
    config = OmegaConf.to_container(config)
    config = {**config, **config["alg"]}
    env, name = qmix_rnn.env_from_config(dict(config))
    rng = jax.random.PRNGKey(config["SEED"])
    start = time.perf_counter()
    compiled = jax.jit(qmix_rnn.make_train(config, env)).lower(rng).compile()
    compiled_at = time.perf_counter()
    outs = jax.block_until_ready(compiled(rng))
    done = time.perf_counter()
    final = {k: float(np.asarray(v).mean()) for k, v in outs["runner_state"][2].items()}
    t_env = int(outs["runner_state"][0].timesteps)
    report = {
        "implementation": "JaxMARL baselines/QLearning/qmix_rnn.py", "env": name, "seed": config["SEED"],
        "alg": {k: config[k] for k in sorted(config["alg"])}, "t_env": t_env,
        "compile_s": compiled_at - start, "run_s": done - compiled_at, "env_steps_per_s": t_env / (done - compiled_at),
        "final_test": final,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=1))
    print(f"RESULT T={t_env} compile_s={report['compile_s']:.1f} run_s={report['run_s']:.1f} "
          f"env_steps_per_s={report['env_steps_per_s']:.0f} test_return={final['returned_episode_returns']:.2f}")


main()
