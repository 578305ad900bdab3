"""Optional dependencies: imported only where a feature uses them, with one line naming the extra to install.

``pip install -e .`` gives everything ``paintseg demo`` and the default path need. Features that need a package
outside the core dependencies (SAM refinement, open_clip embeddings, offline ImageNet encoders) import it through
:func:`require`, so a missing package is a :class:`MissingExtraError` - printed by the CLI as one line such as
``--refine sam needs the package segment-anything: pip install "paintseg[sam]"`` - never a traceback from the
middle of a run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from paintseg.errors import PaintsegError


class MissingExtraError(PaintsegError):
    """A feature needs a package from one of paintseg's extras that is not installed."""


def require(module: str, *, package: str, extra: str | None, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``; when it is missing, say which pip package and which extra bring it
    (``extra=None``: a core dependency, which a plain ``pip install -e .`` installs)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        fix = (f'pip install "paintseg[{extra}]"' if extra else
               f"pip install {package} (a core dependency: reinstall paintseg with pip install -e .)")
        raise MissingExtraError(f"{feature} needs the package {package} (import {module!r} failed: {e}); "
                                f"install it with: {fix}") from None
