"""--tensorboard: the event files hold metrics.csv's numbers per epoch and the run's figures,
read back with TensorBoard's own reader (a dev dependency); without the package, one error
line."""

import csv
import io
import json
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

import pyrovae
from pyrovae.cli.train import main


def test_tensorboard_logs_every_metric_per_epoch_and_the_figures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    pyrovae.train(
        epochs=4, anneal_epochs=2, hidden=(32,), quiet=True, tensorboard=True, out=str(out)
    )
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c != "epoch"]
    assert {"train_elbo", "val_elbo", "test_elbo", "beta", "seconds"} <= set(columns)
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == sorted(columns)
    for column in columns:
        logged = events.Scalars(column)
        assert [e.step for e in logged] == [int(r["epoch"]) for r in rows], column
        expected = [float(r[column]) for r in rows]
        np.testing.assert_allclose([e.value for e in logged], expected, rtol=1e-6, err_msg=column)
    figures = json.loads((out / "summary.json").read_text())["figures"]
    assert sorted(events.Tags()["images"]) == sorted(f"figures/{Path(f).stem}" for f in figures)
    for name in figures:
        (image,) = events.Images(f"figures/{Path(name).stem}")
        assert image.step == len(rows)
        shown = mpimg.imread(io.BytesIO(image.encoded_image_string), format="png")
        drawn = mpimg.imread(out / name)[..., :3]
        assert (image.height, image.width) == drawn.shape[:2]
        np.testing.assert_array_equal(np.round(shown[..., :3] * 255), np.round(drawn * 255))


def test_tensorboard_without_the_package_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    assert main(["--epochs", "1", "--quiet", "--tensorboard", "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --tensorboard needs the tensorboard package")
    assert lines[0].endswith('pip install -e ".[tensorboard]"')
    assert not out.exists()  # refused before the run folder was made
