"""The bad-input suite (tests/bad_inputs.py): every case fails with a one-line message that names the file and
what to do - never a traceback from inside a library - and leaves what was written before as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bad_inputs import CASES, OK_CASES
from paintseg.cli import app


def _files(root: Path, folders: bool = False) -> dict[str, bytes | None]:
    """Every file under ``root`` and its bytes (and with ``folders`` every folder, as None)."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))
            if p.is_file() or (folders and p.is_dir())}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_message(case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args, named = case.build(tmp_path)
    before = _files(tmp_path, folders=True)
    if case.patch is not None:
        case.patch(monkeypatch)
    result = CliRunner().invoke(app, args)
    output = result.output + (str(result.exception) if result.exception and not isinstance(result.exception,
                                                                                           SystemExit) else "")
    assert result.exit_code in (1, 2), output
    assert "Traceback" not in output and not (result.exception and not isinstance(result.exception, SystemExit))
    assert case.says.lower() in output.lower(), output
    assert named.name in output, output
    after = _files(tmp_path, folders=True)
    assert all(after.get(name) == data for name, data in before.items()), "a file written before was changed"
    if case.patch is None:  # input is checked before anything is written (a simulated disk fault comes later)
        assert sorted(set(after) - set(before)) == [], "written before the input was checked"


@pytest.mark.parametrize("name,build,says", OK_CASES, ids=[n for n, _, _ in OK_CASES])
def test_odd_but_valid_input_works(name, build, says, tmp_path: Path) -> None:
    args, _ = build(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and says in result.output, result.output


def test_a_disk_that_fills_up_mid_run_loses_nothing_and_the_rerun_completes(tiny_episode: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import json

    import paintseg.paint.candidates as candidates

    args = ["generate", str(tiny_episode), "--generator", "copy-paste", "--out", str(tmp_path / "syn"),
            "--per-class", "6", "--candidates", "2", "--batch", "2", "--refine", "none"]
    real, calls = candidates.save_png, {"n": 0}

    def fill_up(path, array):
        calls["n"] += 1
        if calls["n"] > 12:  # the disk fills during the second batch (5 files per placement)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, array)

    monkeypatch.setattr(candidates, "save_png", fill_up)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no space left" in result.output and "run the same command again" in result.output
    manifest = tmp_path / "syn/candidates/manifest.jsonl"
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert len(lines) == 4 and len({x["placement"] for x in lines}) == 2  # the first batch only, complete
    kept = _files(tmp_path / "syn/candidates")
    monkeypatch.setattr(candidates, "save_png", real)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    after = _files(tmp_path / "syn/candidates")
    assert all(after[name] == data for name, data in kept.items() if name != "manifest.jsonl")
    done = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert len(done) == 12 and len({(x["placement"], x["candidate"]) for x in done}) == 12  # none duplicated
