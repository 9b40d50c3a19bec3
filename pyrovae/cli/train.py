"""``pyrovae-train`` (``python scripts/train_svi.py``): one flag per :class:`TrainConfig` field, and
one per option of each registered model's recipe, grouped under that model."""

import argparse
import sys
import types
import typing
from dataclasses import fields
from pathlib import Path

from pyrovae.cli.common import (
    OneLineErrorParser,
    fail,
    interrupted_status,
    terminate_as_interrupt,
    write_failure,
)
from pyrovae.errors import PyrovaeError
from pyrovae.folder.config import TrainConfig
from pyrovae.inference.checkpoint import load_checkpoint
from pyrovae.inference.settings import TrainSettings
from pyrovae.models import GUIDES, MODELS
from pyrovae.recipes import GUIDE_OPTIONS, RECIPES
from pyrovae.runs.train import default_out, train

# Options that may be changed when continuing a run with --resume.
RESUMABLE = {"epochs", "quiet", "device", "eval_batch_size", "distributed"}


def _base_type(annotation):
    """``int | None`` -> ``int``; ``tuple[int, ...]`` -> ``int``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _model_options() -> dict[str, tuple[str, object]]:
    """Option name -> (``--model M`` or ``--guide G`` naming what declares it, the option)."""
    found: dict[str, tuple[list[str], object]] = {}
    declared = [(f"--model {name}", recipe.options) for name, recipe in RECIPES.items()]
    declared += [(f"--guide {name}", options) for name, options in GUIDE_OPTIONS.items()]
    for owner, options in declared:
        for option in options:
            owners, _ = found.setdefault(option.name, ([], option))
            owners.append(owner)
    return {k: (", ".join(owners), option) for k, (owners, option) in found.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="train_svi.py",
        description="Train a Pyro model/guide pair by SVI and write a run folder "
        "(config.json, checkpoint.pt, metrics.csv, summary.json, figures).",
        epilog=f"registered models: {', '.join(MODELS)}; registered guides: "
        f"{', '.join(GUIDES)}. Your own: --model/--guide package.module:attr, or --pair "
        "package.module:attr for one object with model and guide methods.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    groups = {
        "run": parser.add_argument_group("model, data and run folder"),
        "training": parser.add_argument_group("training"),
    }
    training = {f.name for f in fields(TrainSettings)}
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.metadata.get("cli", True) is False:
            continue
        group = groups["training" if f.name in training else "run"]
        flag = "--" + f.name.replace("_", "-")
        extra = {k: v for k, v in f.metadata.items() if k not in ("help", "cli")}
        kind = _base_type(hints[f.name])
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            group.add_argument(flag, action="store_true", help=help_text)
        else:
            extra.setdefault("metavar", f.name.upper())
            group.add_argument(flag, type=kind, help=help_text, **extra)
    model_groups = {}
    for name, (owners, option) in _model_options().items():
        if owners not in model_groups:
            model_groups[owners] = parser.add_argument_group(f"options of {owners}")
        model_groups[owners].add_argument(
            option.flag,
            type=option.type,
            dest=f"option:{name}",
            metavar=name.upper(),
            help=f"{option.help} (default: {option.default})",
        )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its folder (its config.json is used; "
        f"only {', '.join('--' + o.replace('_', '-') for o in sorted(RESUMABLE))} may be changed)",
    )
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="with --resume or --features: import and run the package.module:attr code that "
        "the folder's config.json names (its model, guide, pair or recipe); only for folders "
        "you trust",
    )
    return parser


def parse(argv: list[str] | None = None) -> tuple[dict, str | None]:
    """``(TrainConfig keyword arguments, --resume folder)`` from the command line; model
    options are gathered into ``options``; ``trust_code`` is a keyword of :func:`train`."""
    args = vars(build_parser().parse_args(argv))
    resume = args.pop("resume", None)
    options = {k.split(":", 1)[1]: args.pop(k) for k in list(args) if k.startswith("option:")}
    if options:
        args["options"] = options
    return args, resume


def saved_epoch(folder: Path) -> int | None:
    """The epoch of the folder's checkpoint, or None when it cannot be read."""
    try:
        return int(load_checkpoint(folder / "checkpoint.pt", require_all=False)["epoch"])
    except (PyrovaeError, KeyError, TypeError, ValueError):
        return None


def _what_is_kept(run_dir) -> str:
    """What a run stopped by a failed write keeps, and how to go on."""
    folder = Path(run_dir) if run_dir else None
    if folder is not None and (folder / "checkpoint.pt").is_file():
        epoch = saved_epoch(folder)
        saved = f"epoch {epoch}" if epoch else "the last completed epoch"
        return (
            f"every file written before is whole and {saved} is saved: free space, then "
            f"continue with --resume {folder}"
        )
    return "nothing of the run was saved: free space (or choose another --out) and run again"


def interrupted_message(run_dir) -> str:
    """What Ctrl-C or SIGTERM left: a checkpoint to resume from, a started folder, or
    nothing."""
    folder = Path(run_dir) if run_dir else None
    if folder is not None and (folder / "checkpoint.pt").is_file():
        epoch = saved_epoch(folder)
        saved = f"epoch {epoch} is saved" if epoch else "the last completed epoch is saved"
        return f"interrupted: {saved}; continue with --resume {folder}"
    if folder is not None and (folder / "config.json").is_file():
        return f"interrupted before an epoch completed; --resume {folder} starts the run again"
    return "interrupted before the run folder was written: nothing to resume"


def main(argv: list[str] | None = None) -> int:
    args, resume = parse(argv)
    run_dir = resume
    try:
        with terminate_as_interrupt():
            return _main(args, resume)
    except KeyboardInterrupt as exc:  # a second signal while the first one unwinds
        print(interrupted_message(run_dir), file=sys.stderr)
        return interrupted_status(exc)


def _main(args: dict, resume) -> int:
    run_dir = resume
    try:
        if resume is not None:
            fixed = sorted(set(args) - RESUMABLE - {"trust_code"})
            if fixed:
                flags = ", ".join("--" + f.replace("_", "-") for f in fixed)
                raise PyrovaeError(f"--resume keeps the run's own settings; drop {flags}")
            run = train(resume=resume, **args)
        else:
            trust_code = args.pop("trust_code", False)
            config = TrainConfig(**args)
            run_dir = config.out = str(config.out or default_out(config))
            run = train(config, trust_code=trust_code)
    except PyrovaeError as exc:
        return fail(exc)
    except KeyboardInterrupt as exc:
        print(interrupted_message(run_dir), file=sys.stderr)
        return interrupted_status(exc)
    except OSError as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        return fail(PyrovaeError(f"{reason}; {_what_is_kept(run_dir)}"))
    s = run.summary
    if not run.is_main:
        return 0
    print(
        f"{s['model']} on {s['dataset']}: test ELBO {s['test_elbo']:.3f} nats/example "
        f"after {s['epochs']} epochs ({s['seconds']:.1f} s); run folder {run.folder.path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
