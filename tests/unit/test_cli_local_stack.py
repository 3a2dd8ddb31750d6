"""The product's CLI without the local stack: ``simulate`` and ``demo`` say what to install (exit 2)."""

from __future__ import annotations

import importlib.abc
import sys

import pytest

from omborigrid_export_cli.main import EXIT_USAGE, main


class AbsentLocalStack(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == "omborigrid_local" or fullname.startswith("omborigrid_local."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_given_no_local_stack_when_its_command_runs_then_one_sentence_says_how_to_install_it(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given: the omborigrid-local distribution is not installed (as after a plain `pip install omborigrid-export`):
    # a finder in front of all others answers for it as an absent package would.
    for name in [m for m in sys.modules if m == "omborigrid_local" or m.startswith("omborigrid_local.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [AbsentLocalStack(), *sys.meta_path])

    code = main([command, "--help"])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert f"'{command}' needs the local stack" in captured.err
    assert "make install" in captured.err
    assert "pip install -e ./local_stack" in captured.err
    assert "Traceback" not in captured.err
