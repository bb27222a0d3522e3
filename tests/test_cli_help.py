"""`glasslab --version` and a clean `glasslab --help` that lists every subcommand with an example."""

import re

import pytest

import glasslab
from glasslab import cli


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"glasslab {glasslab.__version__}"


def test_help_lists_every_subcommand_with_an_example(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text, "RST markup in --help"
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    assert commands == {"simulate", "relaxation", "train", "evaluate", "ridge", "publish", "info"}
    for command in commands:
        assert re.search(rf"^  {command} +glasslab {command} ", text, re.M), f"no example for {command}"
    assert "GLASSLAB_THREADS" in text


def test_a_bad_thread_setting_is_one_line_and_exit_code_2(monkeypatch, capsys):
    monkeypatch.setenv("GLASSLAB_THREADS", "many")
    assert cli.main(["info", "nothing.h5"]) == cli.EXIT_ERROR
    assert "GLASSLAB_THREADS" in capsys.readouterr().err
