"""``pyrovae-features RUN_DIR`` (``python scripts/features.py``): a trained run's latent means
as features, scored by a linear probe against the raw pixels
(:func:`pyrovae.runs.probe.linear_probe`)."""

import argparse
import sys
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
from pyrovae.runs.probe import ProbeOptions, linear_probe, table


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="features.py",
        description="Encode a trained run's training and test rows into posterior means "
        "E_q[z|x] and report the test accuracy of a logistic regression on them against the "
        "same classifier on the pixels, per label count. Writes features.json into the run "
        "folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by train_svi.py")
    for f in fields(ProbeOptions):
        flag, extra = "--" + f.name.replace("_", "-"), dict(f.metadata)
        if f.type is bool:
            parser.add_argument(flag, action="store_true", **extra)
        elif f.name == "labels":
            parser.add_argument(flag, default=list(f.default), metavar="N", **extra)
        else:
            parser.add_argument(flag, type=int, default=f.default, **extra)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="import and run the package.module:attr code that the folder's config.json names "
        "(its model, guide, pair or recipe); only for folders you trust",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = {f.name: getattr(args, f.name) for f in fields(ProbeOptions)}
        with terminate_as_interrupt():
            out = linear_probe(
                args.run_dir, device=args.device, trust_code=args.trust_code, **options
            )
    except PyrovaeError as exc:
        return fail(exc)
    except KeyboardInterrupt as exc:
        print("interrupted: no features.json written", file=sys.stderr)
        return interrupted_status(exc)
    except OSError as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        return fail(PyrovaeError(f"{reason}; files written before are whole"))
    print(table(out))
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"written to {Path(args.run_dir) / 'features.json'}")
    return 0
