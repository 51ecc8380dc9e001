"""`autoscale init`: the starter experiments are valid configs as written, and nothing is overwritten."""

from __future__ import annotations

import pytest

from autoscale.cli import main
from autoscale.experiment.config import load_config


def _init(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["init", *args])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


def test_both_starters_load_as_they_are_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _init(capsys)[0] == 0 and _init(capsys, "mine.yaml", "--command")[0] == 0
    ours = load_config(tmp_path / "experiment.yaml")
    assert ours.executor.kind == "inline" and ours.data.sources == tmp_path / "corpus"
    assert ours.target.budget == 16 * ours.ddo.budgets[0]  # N2^2 / N1 of the two budgets
    command = load_config(tmp_path / "mine.yaml")
    assert command.executor.kind == "command" and command.executor.command[0] == "{python}"
    assert command.data.domains == ["web", "code", "books"] and command.executor.trainer_id == "my-trainer-v1"
    text = (tmp_path / "mine.yaml").read_text()
    assert "autoscale check RUN_DIR" in text and "trainer_id" in text


def test_an_existing_file_is_left_as_it_is(tmp_path, capsys):
    path = tmp_path / "experiment.yaml"
    path.write_text("mine\n")
    code, out, err = _init(capsys, str(path))
    assert code == 2 and out == "" and err.splitlines() == [f"error: {path} exists: give another path (it is left as it is)"]
    assert path.read_text() == "mine\n"
    code, _, err = _init(capsys, str(tmp_path / "no" / "x.yaml"))
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err and not (tmp_path / "no").exists()
