"""`kqmix plot`: a PNG with one curve (or band) per group of runs."""


def test_plot_writes_a_png(reference_runs, tmp_path, kqmix):
    import matplotlib.image

    out_png = tmp_path / "curves.png"
    out = kqmix("plot", str(reference_runs["a"]), str(reference_runs["c"]), "--out", str(out_png))
    assert out.returncode == 0, out.stderr
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out_png)
    assert image.shape[0] >= 300 and image.shape[1] >= 800
    assert image[..., :3].std() > 0.01  # not a blank canvas



def test_plot_draws_baselines(reference_runs, tmp_path):
    import matplotlib.image

    from kqmix.plotting import plot_runs

    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    plot_runs([reference_runs["a"]], plain)
    plot_runs([reference_runs["a"]], marked, baselines={"random actions": 4.75})
    assert (matplotlib.image.imread(plain) != matplotlib.image.imread(marked)).any()
