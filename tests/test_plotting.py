"""`kqmix plot`: a PNG with one curve (or band) per group of runs."""

import pytest


def test_plot_writes_a_png(reference_runs, tmp_path, kqmix):
    import matplotlib.image

    out_png = tmp_path / "curves.png"
    out = kqmix("plot", str(reference_runs["a"]), str(reference_runs["c"]), "--out", str(out_png))
    assert out.returncode == 0, out.stderr
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out_png)
    assert image.shape[0] >= 300 and image.shape[1] >= 800
    assert image[..., :3].std() > 0.01  # not a blank canvas


def test_win_rates_get_their_own_panel(reference_runs, tmp_path):
    import json
    import shutil

    import matplotlib.image

    from kqmix import rundir
    from kqmix.plotting import plot_runs

    # The same run, once as it is and once as a SMAX run logs it (a win rate with each greedy test).
    smax = tmp_path / "smax"
    shutil.copytree(reference_runs["a"], smax)
    rows = rundir.read_metrics(smax)
    for row in rows:
        row["test_win_rate"] = None if row.get("test_return_mean") is None else 0.5
    rundir.metrics_path(smax).write_text("".join(json.dumps(row) + "\n" for row in rows))
    plain, with_wins = tmp_path / "plain.png", tmp_path / "wins.png"
    plot_runs([reference_runs["a"]], plain)
    plot_runs([smax], with_wins)
    width_plain = matplotlib.image.imread(plain).shape[1]
    assert matplotlib.image.imread(with_wins).shape[1] == pytest.approx(1.5 * width_plain, abs=2)


def test_plot_draws_baselines(reference_runs, tmp_path):
    import matplotlib.image

    from kqmix.plotting import plot_runs

    # The same legend either way (a baseline adds an entry below the panels): only the line's height differs.
    low, high = tmp_path / "low.png", tmp_path / "high.png"
    plot_runs([reference_runs["a"]], low, baselines={"random actions": 4.0})
    plot_runs([reference_runs["a"]], high, baselines={"random actions": 4.75})
    low, high = matplotlib.image.imread(low), matplotlib.image.imread(high)
    assert low.shape == high.shape and (low != high).any()


def test_runs_logged_at_different_steps_are_aligned():
    from kqmix.plotting import aligned

    # Two seeds whose episodes end at different env steps (as on LBF): rows never share a step.
    a = [{"t_env": 10, "m": 0.0}, {"t_env": 20, "m": 1.0}, {"t_env": 30, "m": 2.0}]
    b = [{"t_env": 12, "m": 0.0}, {"t_env": 22, "m": 0.0}, {"t_env": 29, "m": None}, {"t_env": 33, "m": 4.0}]
    steps, values = aligned([a, b], "m")
    assert steps.tolist() == [12, 20, 22, 30]  # every logged step covered by both runs
    assert values[0] == pytest.approx([0.2, 1.0, 1.2, 2.0], rel=1e-12)
    assert values[1] == pytest.approx([0.0, 0.0, 0.0, 4.0 * (30 - 22) / (33 - 22)], rel=1e-12)
    steps, values = aligned([a, [{"t_env": 5, "m": None}]], "m")
    assert len(steps) == 0


def test_a_switch_of_environment_is_marked_where_it_happened(reference_runs, tmp_path):
    import json
    import shutil

    import matplotlib.image

    from kqmix import rundir
    from kqmix.plotting import plot_runs

    # The same run, once as it is and once recorded as having moved to a variant at step 300.
    switched = tmp_path / "switched"
    shutil.copytree(reference_runs["a"], switched)
    config = json.loads((switched / rundir.CONFIG_FILE).read_text())
    config.update(switch_env_key=config["env_key"] + "_variant", switch_env_at=300)
    (switched / rundir.CONFIG_FILE).write_text(json.dumps(config))
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    plot_runs([reference_runs["a"]], plain)
    plot_runs([switched], marked)
    plain, marked = matplotlib.image.imread(plain), matplotlib.image.imread(marked)
    assert plain.shape == marked.shape and (plain != marked).any()
