"""The `paintseg` command line: one thin function per subcommand; the work lives in the stage packages.

:mod:`.common` holds the app and what every command shares; the commands live by what they work on -
:mod:`.segmentation` (split, data, train, predict, evaluate), :mod:`.synthesis` (generator, harmoniser, convert,
place, generate, curate, painting-quality) and :mod:`.experiments` (run, demo, report)."""

from __future__ import annotations

import sys

from . import experiments, segmentation, synthesis  # each registers its commands on the app
from .common import _configured, app, typed

__all__ = ["app", "main", "typed", "_configured", "experiments", "segmentation", "synthesis"]


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="paintseg")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
