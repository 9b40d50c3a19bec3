"""``pyrovae-report RUN_DIR`` (``python -m pyrovae.report``): rebuild a run folder's
``report.html`` (:func:`pyrovae.report.html.write_report`)."""

import sys

from pyrovae.cli.common import OneLineErrorParser, fail
from pyrovae.errors import PyrovaeError
from pyrovae.report.html import write_report


def build_parser() -> OneLineErrorParser:
    parser = OneLineErrorParser(
        prog="pyrovae-report",
        description="Build report.html, one self-contained page, from a run folder.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by train_svi.py")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = write_report(args.run_dir)
    except PyrovaeError as exc:
        return fail(exc)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
