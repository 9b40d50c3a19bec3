"""report.html, read back with the standard library's HTML parser: every figure of the run
folder embedded once and byte for byte, every summary number and option shown with what it
is, the best epoch stated, and the diagnostics once the run is diagnosed."""

import base64
import csv
import json
import math
import shutil
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest
import torch

import pyrovae
from pyrovae import plots
from pyrovae.cli import report as report_cli
from pyrovae.recipes import ssvae as ssvae_recipe
from pyrovae.report import html as report
from pyrovae.report import keys

# ----------------------------------------------------------------------------- reading the page


class Page(HTMLParser):
    """What a test needs from report.html: the images (with the section and figure they sit
    in), the table rows by ``data-key`` (cells by class), the text of elements with an id,
    and every external reference."""

    def __init__(self, text: str):
        super().__init__()
        self.images: list[dict] = []
        self.rows: dict[str, dict] = {}
        self.titles: dict[str, str] = {}  # figure data-file -> its heading
        self.by_id: dict[str, str] = {}
        self.external: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._row = self._cell = self._heading = None
        self._ids: list[list] = []
        self.feed(text)

    def _enclosing(self, tag: str, attribute: str):
        return next((a.get(attribute) for t, a in reversed(self._stack) if t == tag), None)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag == "link":
            self.external.append(str(attrs))
        if tag == "img":
            self.images.append(
                {
                    "src": attrs["src"],
                    "section": self._enclosing("section", "id"),
                    "file": self._enclosing("figure", "data-file"),
                }
            )
            return
        if tag in ("meta", "br"):
            return
        self._stack.append((tag, attrs))
        if "id" in attrs:
            self._ids.append([attrs["id"], tag, ""])
        if tag == "tr" and "data-key" in attrs:
            self._row = self.rows.setdefault(attrs["data-key"], {})
        if tag == "td" and self._row is not None:
            self._cell = attrs.get("class", "").split()[0]
            self._row[self._cell] = ""
        if tag == "h3" and self._enclosing("figure", "data-file"):
            self._heading = self._enclosing("figure", "data-file")
            self.titles[self._heading] = ""

    def handle_endtag(self, tag):
        while self._stack:
            open_tag, attrs = self._stack.pop()
            if "id" in attrs:
                name, _, text = self._ids.pop()
                self.by_id[name] = " ".join(text.split())
            if open_tag == tag:
                break
        if tag == "tr":
            self._row = None
        if tag == "td":
            self._cell = None
        if tag == "h3":
            self._heading = None

    def handle_data(self, data):
        for entry in self._ids:
            entry[2] += data
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data
        if self._heading is not None:
            self.titles[self._heading] += data


def read_page(run_dir: Path) -> Page:
    return Page((run_dir / "report.html").read_text())


def png_bytes(src: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix)
    return base64.b64decode(src[len(prefix) :])


def leaves(value, prefix: str = ""):
    """``(dotted key, value)`` of every value in nested dicts; dicts themselves included."""
    for key, item in value.items():
        yield prefix + key, item
        if isinstance(item, dict):
            yield from leaves(item, f"{prefix}{key}.")


def assert_shows(text: str, value, key: str) -> None:
    """The cell ``text`` shows ``value``: numbers to 6 significant digits, lists item by item."""
    text = text.strip()
    if isinstance(value, bool):
        assert text == ("yes" if value else "no"), key
    elif isinstance(value, (int, float)):
        assert float(text) == pytest.approx(value, rel=1e-5, abs=1e-12), key
    elif value is None:
        assert text == "none", key
    elif isinstance(value, list):
        shown = text.split(", ") if value else []
        assert len(shown) == len(value), key
        for item, cell in zip(value, shown, strict=True):
            assert_shows(cell, item, key)
    elif isinstance(value, dict):  # an item of a list, as JSON
        assert json.loads(text) == value, key
    else:
        assert text == str(value), key


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A short digits VAE run with KL annealing; records the best epoch its training-curves
    figure was drawn with."""
    torch.set_num_threads(2)
    drawn = {}
    original = plots.plot_training_curves

    def recording(metrics, path, best_epoch=None):
        drawn["best_epoch"] = best_epoch
        return original(metrics, path, best_epoch=best_epoch)

    out = tmp_path_factory.mktemp("report") / "digits"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "plot_training_curves", recording)
        run = pyrovae.train(epochs=6, anneal_epochs=3, hidden=(32,), quiet=True, out=str(out))
    return run, drawn


@pytest.fixture(scope="module")
def ssvae_run(tmp_path_factory):
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("report") / "ssvae"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ssvae_recipe, "BASELINE_MAX_EPOCHS", 20)
        run = pyrovae.train(
            model="ssvae", labels=50, epochs=3, hidden=(32,), quiet=True, out=str(out)
        )
    return run


@pytest.fixture(params=["digits", "ssvae"])
def run_dir(request, digits_run, ssvae_run) -> Path:
    run = digits_run[0] if request.param == "digits" else ssvae_run
    return run.folder.path


# ----------------------------------------------------------------------------- tests


def test_the_template_ships_as_package_data():
    template = resources.files("pyrovae.report").joinpath("templates", report.TEMPLATE).read_text()
    assert "<!DOCTYPE html>" in template and "{{ table(summary_rows) }}" in template


def assert_every_png_embedded_once(run_dir: Path, page: Page) -> None:
    files = sorted(run_dir.glob("*.png"))
    assert len(files) >= 5
    assert len(page.images) == len(files)
    embedded = [png_bytes(image["src"]) for image in page.images]
    for path in files:
        assert embedded.count(path.read_bytes()) == 1, path.name
    assert sorted(image["file"] for image in page.images) == [p.name for p in files]
    assert page.external == []  # self-contained: nothing fetched from elsewhere


def test_report_embeds_every_figure_of_the_run_once(run_dir):
    page = read_page(run_dir)
    assert_every_png_embedded_once(run_dir, page)
    assert page.titles["training_curves.png"] == "Training curves"
    assert page.titles["latent_space.png"] == "Latent space"
    curves = next(i for i in page.images if i["file"] == "training_curves.png")
    assert curves["section"] == "training"
    others = {i["section"] for i in page.images if i["file"] != "training_curves.png"}
    assert others == {"figures"}


def test_report_shows_every_summary_number_with_what_it_is(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    page = read_page(run_dir)
    best = f"best epoch ({summary['best_epoch']})"
    for key, value in leaves(summary):
        row = page.rows[key]
        assert row["text"].strip(), f"{key} has no description"
        if not isinstance(value, dict):
            assert_shows(row["value"], value, key)
        if keys.SUMMARY_KEYS.get(key, keys.Described("")).when == keys.BEST:
            assert row["when"].strip() == best, key
    for key in ("test_elbo", "val_elbo", "train_elbo"):
        assert page.rows[key]["units"] == "nats per example"


def test_report_shows_every_option_of_the_config(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    page = read_page(run_dir)
    for key, value in leaves(config):
        row = page.rows[f"config.{key}"]
        assert row["text"].strip(), f"option {key} has no description"
        if not isinstance(value, dict):
            assert_shows(row["value"], value, key)


def test_report_states_the_best_epoch(digits_run):
    run, drawn = digits_run
    best = run.summary["best_epoch"]
    history = [r for r in run.history if math.isfinite(r["val_elbo"])]
    assert best == max(history, key=lambda r: r["val_elbo"])["epoch"]
    assert drawn["best_epoch"] == best  # run_figures drew the curves with it
    page = read_page(run.folder.path)
    assert (
        f"taken at epoch {best}, the epoch with the best validation ELBO"
        in page.by_id["best-epoch"]
    )
    assert page.rows["best_epoch"]["value"] == str(best)


def test_training_curves_of_an_annealed_run_draw_the_kl_weight_of_metrics_csv(digits_run):
    run, _ = digits_run
    with (run.folder.path / "metrics.csv").open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    fig = plots.training_curves_figure(rows, best_epoch=run.summary["best_epoch"])
    _, ax_beta = fig.axes
    kl = ax_beta.lines[0]
    assert list(kl.get_xdata()) == [r["epoch"] for r in rows]
    assert list(kl.get_ydata()) == [r["beta"] for r in rows]
    assert rows[0]["beta"] < 1 and rows[-1]["beta"] == 1  # annealed: the panel is drawn


def test_report_gains_the_diagnostics_and_their_figures(digits_run, tmp_path):
    run_dir = tmp_path / "diagnosed"
    shutil.copytree(digits_run[0].folder.path, run_dir)
    assert "diagnostics" not in read_page(run_dir).by_id
    out = pyrovae.diagnose(
        run_dir, iwae_samples=50, nuts_points=0, amortization_points=0, max_points=40
    )
    page = read_page(run_dir)
    assert "diagnostics" in page.by_id
    assert_every_png_embedded_once(run_dir, page)
    figures = [name for name in out["files"] if name.endswith(".png")]
    assert set(figures) == {
        "pareto_khat.png", "iwae_vs_k.png", "kl_per_dim.png", "ppc_statistics.png",
        "ppc_pixels.png", "sample_quality.png", "sbc_ecdf.png",
    }  # fmt: skip
    assert {i["file"] for i in page.images if i["section"] == "diagnostics"} == set(figures)
    assert page.titles["kl_per_dim.png"] == "KL per dim"
    for key in ("iwae_log_likelihood", "iwae_standard_error", "kl_total", "active_units"):
        row = page.rows[f"diagnostics.{key}"]
        assert row["text"].strip(), key
        assert_shows(row["value"], out[key], key)
    for note in out["notes"]:
        assert note in page.by_id["diagnostics"]


def test_report_command_rebuilds_the_page(digits_run, tmp_path, capsys):
    run_dir = tmp_path / "copy"
    shutil.copytree(digits_run[0].folder.path, run_dir)
    (run_dir / "report.html").unlink()
    assert report_cli.main([str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"written to {run_dir / 'report.html'}"
    assert_every_png_embedded_once(run_dir, read_page(run_dir))


@pytest.mark.parametrize(
    "name, words",
    [
        ("missing", ["no run folder at", "missing"]),
        (".", ["is not a pyrovae run folder", "config.json"]),
        ("notes.txt", ["notes.txt is a file, not a run folder"]),
    ],
)
def test_report_command_refuses_a_folder_that_is_not_a_run(name, words, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    path = tmp_path / name
    assert report_cli.main([str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(
    "arguments",
    [
        {"model": "fa"},
        {"model": "linear-ae"},
        {"dataset": "spiral", "latent_dim": 1, "hidden": (16,)},
    ],
    ids=["fa", "linear-ae", "spiral"],
)
def test_every_summary_key_of_other_models_is_described(arguments, tmp_path):
    run = pyrovae.train(epochs=2, quiet=True, out=str(tmp_path / "run"), **arguments)
    page = read_page(run.folder.path)
    for key, _ in leaves(run.summary):
        assert page.rows[key]["text"].strip(), f"{key} has no description"


# ----------------------------------------------------------------------------- the docs' tables


def docs_key_rows():
    """The rows the documentation's ``run-folder-keys`` directive (docs/_ext) shows."""
    directive = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "run_folder_keys.py"
    assert "from pyrovae.report.keys import key_rows" in directive.read_text()
    return keys.key_rows


def test_the_run_folder_page_and_the_report_describe_each_key_in_the_same_words(digits_run):
    import tomllib

    key_rows = docs_key_rows()
    toml = tomllib.loads(resources.files("pyrovae.report").joinpath("keys.toml").read_text())
    docs = {kind: {row[0]: row[1:] for row in key_rows(kind)} for kind in ("summary", "config")}
    assert list(docs["summary"]) == list(toml["summary"])  # every key, in the file's order
    for key, entry in toml["summary"].items():
        assert docs["summary"][key][:2] == (entry["text"], entry.get("units", "")), key
    page = read_page(digits_run[0].folder.path)
    summary = json.loads((digits_run[0].folder.path / "summary.json").read_text())
    shown = [key for key, _ in leaves(summary) if key in docs["summary"]]
    assert len(shown) >= 20
    for key in shown:
        text, units, when = docs["summary"][key]
        row = page.rows[key]
        assert (row["text"].strip(), row["units"].strip()) == (text, units), key
        if when != "best epoch":
            assert row["when"].strip() == when, key
    config = json.loads((digits_run[0].folder.path / "config.json").read_text())
    for key, _ in leaves(config):
        if key in docs["config"]:
            assert page.rows[f"config.{key}"]["text"].strip() == docs["config"][key][0], key


def test_the_run_folder_page_shows_every_table_and_describes_every_file(digits_run, tmp_path):
    page = (Path(__file__).resolve().parents[1] / "docs" / "run-folder.md").read_text()
    for kind in ("files", "config", "summary", "diagnostics", "figures"):
        assert f"```{{run-folder-keys}} {kind}\n```" in page, kind
    run_dir = tmp_path / "diagnosed"
    shutil.copytree(digits_run[0].folder.path, run_dir)
    pyrovae.diagnose(run_dir, iwae_samples=20, nuts_points=0, amortization_points=0, max_points=20)
    pyrovae.linear_probe(run_dir, labels=(100,), max_iter=50)
    described = {name for name, _ in docs_key_rows()("files")}
    figures = {name for name, _ in docs_key_rows()("figures")}
    for path in run_dir.iterdir():
        name = path.name + ("/" if path.is_dir() else "")
        assert name in described or (path.suffix == ".png" and "*.png" in described), name
        if path.suffix == ".png":
            assert path.name in figures, path.name


def test_every_figure_the_package_draws_has_a_caption():
    import re

    package = Path(__file__).resolve().parents[1] / "pyrovae"
    names = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r'"([a-z_]+)\.png"', path.read_text())
    }
    assert len(names) >= 15
    assert sorted(names - set(keys.FIGURE_CAPTIONS)) == []


def test_diagnostics_of_another_epoch_than_the_summary_s_are_said_to_be(digits_run, tmp_path):
    run_dir = tmp_path / "diagnosed"
    shutil.copytree(digits_run[0].folder.path, run_dir)
    out = pyrovae.diagnose(run_dir, iwae_samples=10, nuts_points=0, amortization_points=0)
    best = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    assert out["epoch"] == best and out["checkpoint"]
    page = read_page(run_dir)
    assert page.rows["diagnostics.epoch"]["value"] == str(best)
    assert "not those of epoch" not in page.by_id["diagnostics"]
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    diagnostics["epoch"] = best - 1  # diagnosed while it trained, then trained on
    (run_dir / "diagnostics.json").write_text(json.dumps(diagnostics))
    report.write_report(run_dir)
    note = read_page(run_dir).by_id["diagnostics"]
    assert f"epoch {best - 1}, not those of epoch {best} that the summary describes" in note
