"""``pyrovae-diagnose RUN_DIR`` (``python scripts/diagnose.py``): posterior diagnostics of a
trained run, written into its folder (:func:`pyrovae.runs.diagnose.diagnose`)."""

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
from pyrovae.runs.diagnose import DiagnosisOptions, diagnose, one_line_summary


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="diagnose.py",
        description="Posterior diagnostics of a trained run on its test rows: IWAE bound, "
        "Pareto k-hat, latent KL and active units, NUTS reference, amortization gap, "
        "posterior predictive checks, sample quality, simulation-based calibration of q(z|x), "
        "calibration error of a categorical q(y|x). Writes diagnostics.json, posterior.nc, "
        "predictive.nc and figures into the run folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by train_svi.py")
    for f in fields(DiagnosisOptions):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:  # on by default: the flag turns it off
            parser.add_argument(
                "--no-" + flag[2:], dest=f.name, action="store_false", help=f.metadata["help"]
            )
            continue
        parser.add_argument(flag, type=int, default=f.default, help=f.metadata["help"])
    parser.add_argument(
        "--no-sbc", action="store_true", help="skip SBC (the same as --sbc-simulations 0)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--trust-code",
        action="store_true",
        help="import and run the package.module:attr code that the folder's config.json names "
        "(its model, guide, pair or recipe); only for folders you trust",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = {f.name: getattr(args, f.name) for f in fields(DiagnosisOptions)}
        if args.no_sbc:
            options["sbc_simulations"] = 0
        with terminate_as_interrupt():
            out = diagnose(
                args.run_dir,
                device=args.device,
                trust_code=args.trust_code,
                progress=not args.quiet,
                **options,
            )
    except PyrovaeError as exc:
        return fail(exc)
    except KeyboardInterrupt as exc:
        print("interrupted: no diagnostics written", file=sys.stderr)
        return interrupted_status(exc)
    except OSError as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        return fail(PyrovaeError(f"{reason}; files written before are whole"))
    if out.get("collapse_warning"):
        print(f"warning: {out['collapse_warning']}", file=sys.stderr)
    print(f"{one_line_summary(out)}; written to {Path(args.run_dir) / 'diagnostics.json'}")
    return 0
