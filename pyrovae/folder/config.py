"""Every option of a training run, in one dataclass shared by the Python API and the CLI.

``scripts/train_svi.py`` builds its argument parser from these fields, so each CLI flag
(``--batch-size``) is the field (``batch_size``) of the same name and help text. The
optimization options are :class:`~pyrovae.inference.settings.TrainSettings`' own fields,
inherited here.
"""

import json
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pyrovae.errors import PyrovaeError
from pyrovae.inference.settings import TrainSettings, option

# Model options that older run folders keep at the top level of config.json, with the values
# they held when not given.
LEGACY_OPTION_DEFAULTS = {
    "labels": None,
    "alpha": None,
    "corruption": 0.3,
    "sparsity_target": 0.05,
    "sparsity_weight": 1.0,
}


@dataclass
class TrainConfig(TrainSettings):
    """A complete, JSON-serializable description of a training run: the model, guide and
    data, how they are optimized (the fields of :class:`TrainSettings`) and where the run
    folder goes."""

    elbo: str | None = option(
        None,
        "trace, meanfield, tracegraph, enum, jit-trace, jit-meanfield, jit-enum, or iwae (the "
        "per-row importance-weighted bound with --num-particles samples); default: the "
        "model's own (trace; meanfield for gumbel-vae)",
    )
    model: str | None = option(
        None,
        "registered model name, or package.module:attr of your own (a class, a factory "
        "f(spec), or a function model(x)); default: vae",
    )
    guide: str | None = option(
        None,
        "registered guide name, or package.module:attr of your own; default: the model's own",
    )
    pair: str | None = option(
        None,
        "package.module:attr of one object with model and guide methods (as in Pyro's VAE "
        "example), instead of --model and --guide",
    )
    rebuild: dict = option(
        dict,
        "how model, guide or pair given as Python objects are rebuilt: their constructor "
        "arguments, or 'pass the object'",
        cli=False,
    )
    recipe: str | None = option(
        None,
        "package.module:attr of a pyrovae.recipes.Recipe subclass for your model "
        "(default: the registered model's own, else the base recipe)",
    )
    dataset: str = option(
        "digits",
        "digits (embedded, no network), mnist, fashion-mnist, spiral, a path to a .npz "
        "with x_train, x_test (and optional y_train, y_test), or a folder of images (class "
        "folders give labels; train/ and test/ give the split)",
    )
    image_size: int | None = option(
        None, "resize and centre-crop a folder's images to N x N pixels", metavar="N"
    )
    data_root: str | None = option(None, "folder with the IDX files of mnist/fashion-mnist")
    features: str | None = option(
        None,
        "a run trained on the same --dataset: train on its posterior means E_q[z|x] "
        "instead of the rows (train, validation and test; the same split), as M2 on M1's "
        "features in Kingma et al. (2014); real-valued, so a gaussian likelihood",
        metavar="RUN_DIR",
    )
    batch_size: int = option(128, "examples per SVI step")
    latent_dim: int | None = option(None, "dimension of z (default: 10, or 1 for spiral)")
    hidden: tuple[int, ...] | None = option(
        None,
        "hidden-layer widths of the encoder, the decoder mirrors them "
        "(default: 256, or 64 64 for spiral)",
        nargs="*",
    )
    net: str = option(
        "mlp",
        "networks of the VAE's decoder, of the normal, lowrank and iaf guides' encoders and "
        "of the ssvae's classifier, encoder and decoder: mlp, or conv for images (two "
        "stride-2 convolutions, then the --hidden layers)",
        choices=("mlp", "conv"),
    )
    likelihood: str | None = option(
        None,
        "p(x|z): bernoulli, continuous-bernoulli, discretized-logistic (quantized levels, "
        "e.g. 8-bit pixels) or gaussian "
        "(default: bernoulli for data in [0, 1], gaussian otherwise)",
    )
    binarize: str = option(
        "dynamic",
        "for the bernoulli likelihood on gray levels: dynamic (resample every batch), "
        "threshold (x > 0.5) or none",
        choices=("dynamic", "threshold", "none"),
    )
    gray_bernoulli: bool = option(
        False,
        "with --binarize none: score gray levels under a Bernoulli anyway "
        "(as Pyro's example does; not a normalized likelihood)",
    )
    gaussian_scale: float | None = option(
        None,
        "fixed sigma of the gaussian likelihood (default: learned per dimension; for spiral, "
        "its known noise level --spiral-noise)",
    )
    val_fraction: float = option(
        0.1, "fraction of the training rows held out for validation (early stopping)"
    )
    spiral_noise: float = option(0.05, "noise level of the spiral data set")
    options: dict = option(
        dict, "the model's own options (see its recipe; each is a flag of its own)", cli=False
    )
    distributed: bool = option(
        False, "data-parallel training over the processes started by torchrun (DDP)"
    )
    seed: int = option(0, "random seed: same seed, same run")
    device: str = option("auto", "cpu, cuda, or auto (cuda when available)")
    out: str | None = option(None, "run folder (default: runs/<model>-<dataset>-<timestamp>)")
    tensorboard: bool = option(
        False,
        "also log every epoch's metrics and, at the end, the figures to RUN_DIR/tensorboard/ "
        '(needs the tensorboard package: pip install -e ".[tensorboard]")',
    )

    def __post_init__(self):
        super().__post_init__()
        if self.features is not None:
            self.features = str(self.features)  # a Path given from Python, as JSON keeps it
        if self.out is not None:
            self.out = str(self.out)
            if not self.out.strip():
                raise PyrovaeError(
                    "--out is empty; name a folder for the run, or leave --out out for "
                    "runs/<model>-<dataset>-<timestamp>"
                )
        if self.hidden is not None:
            self.hidden = tuple(int(h) for h in self.hidden)
        if any(h < 1 for h in self.hidden or ()):
            raise PyrovaeError(f"--hidden sizes must be positive, got {list(self.hidden)}")
        if self.batch_size < 1:
            raise PyrovaeError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise PyrovaeError(f"--latent-dim must be at least 1, got {self.latent_dim}")
        if not 0 <= self.val_fraction < 1:
            raise PyrovaeError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.seed < 2**32:
            raise PyrovaeError(f"--seed must be a whole number in [0, 2**32), got {self.seed}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise PyrovaeError(f"--device must be cpu, cuda or auto, got {self.device!r}")

    def settings(self) -> TrainSettings:
        """The optimization part of this config, as the runner takes it."""
        return TrainSettings(**{f.name: getattr(self, f.name) for f in fields(TrainSettings)})

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def model_name(self) -> str:
        """What the run's model is called: its name, ``package.module:attr``, or the pair's."""
        return self.pair or self.model or "vae"

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """The config of a ``config.json`` object, each field's type checked as a command line
        would check it (one line naming the field otherwise)."""
        if not isinstance(data, dict):
            raise PyrovaeError(
                f"config.json holds a JSON {type(data).__name__}, not an object of the run's "
                "options; is this a pyrovae run folder?"
            )
        known = {f.name for f in fields(cls)}
        data = dict(data)
        if "grey_bernoulli" in data:  # its former name, in older run folders
            data["gray_bernoulli"] = data.pop("grey_bernoulli")
        for key in LEGACY_OPTION_DEFAULTS.keys() & set(data):
            value = data.pop(key)
            if value != LEGACY_OPTION_DEFAULTS[key]:  # given for the run's model
                data.setdefault("options", {})[key] = value
        unknown = set(data) - known
        if unknown:
            raise PyrovaeError(f"unknown config keys {sorted(unknown)}; is this a pyrovae run?")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            _check_field(key, value, hints[key])
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise PyrovaeError(
                f"no config.json in {path.parent}; is it a pyrovae run folder?"
            ) from exc
        except json.JSONDecodeError as exc:
            raise PyrovaeError(
                f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        except UnicodeDecodeError as exc:
            raise PyrovaeError(f"{path} is not UTF-8 text; is it a pyrovae run folder?") from exc


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def _check_field(key: str, value, hint) -> None:
    """A one-line error unless the JSON ``value`` of field ``key`` fits its type ``hint``
    (``int``, ``float``, ``str``, ``bool``, ``dict``, ``tuple[int, ...]``, or ``X | None``)."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None and type(None) in kinds:
        return
    for kind in kinds:
        origin = typing.get_origin(kind) or kind
        if kind is bool and isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if kind is str and isinstance(value, str):
            return
        if origin is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return
        if origin is tuple and isinstance(value, list):
            if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return
    words = [
        "a list of whole numbers" if typing.get_origin(k) is tuple
        else "an object" if (typing.get_origin(k) or k) is dict
        else "null" if k is type(None)
        else _TYPE_WORDS.get(k, str(k))
        for k in kinds
    ]  # fmt: skip
    what = "the model's own options" if key == "options" else "--" + key.replace("_", "-")
    raise PyrovaeError(
        f"config.json: {key} must be {' or '.join(words)}, got {json.dumps(value)[:60]}; "
        f"fix or remove the field ({what})"
    )
