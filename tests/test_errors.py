"""User errors end a CLI with one `error:` line and exit status 2; any other exception keeps its
traceback (exit status 1), in main.py and in the tools."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import main
import test_one_video
from tests.train_support import REPO_ROOT, make_tiny_dataset, tiny_config, write_config
from utils.errors import BadFileError, ConfigError, MissingFileError, UserError, run_cli


def test_run_cli_turns_a_user_error_into_one_line_and_status_2(capsys):
    def fails() -> None:
        raise MissingFileError("gloss dictionary not found: x.npy; run the preprocessing first")

    assert run_cli(fails) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: gloss dictionary not found: x.npy; run the preprocessing first\n"
    assert captured.out == ""


def test_run_cli_passes_other_exceptions_and_exit_statuses_through():
    def bug() -> None:
        raise RuntimeError("a bug, not the user's mistake")

    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(bug)
    assert run_cli(lambda: 3) == 3 and run_cli(lambda: None) == 0 and run_cli(lambda: {"wer": 1.0}) == 0


def test_user_errors_keep_the_builtin_bases_their_callers_catch():
    assert issubclass(ConfigError, ValueError) and issubclass(BadFileError, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError)
    for cls in (ConfigError, BadFileError, MissingFileError):
        assert issubclass(cls, UserError)


def _exception_classes() -> dict[str, list[str]]:
    """'path:Class' -> its base names, for every class defined in the project's runtime code."""
    found = {}
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in ("tests", "bench", ".venv", "software") or rel.parts[0].startswith("."):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                if node.name.endswith(("Error", "Failed")) or any(b.endswith("Error") for b in bases):
                    found[f"{rel}:{node.name}"] = bases
    return found


def test_every_error_class_of_the_project_is_a_user_error():
    classes = _exception_classes()
    user = {"UserError"}
    changed = True
    while changed:  # the classes deriving (indirectly) from UserError, by name
        derived = {key.split(":")[1] for key, bases in classes.items()
                   if any(base.split(".")[-1] in user for base in bases)}
        changed = not derived <= user
        user |= derived
    outside = sorted(key for key in classes if key.split(":")[1] not in user)
    assert outside == [], outside
    assert len(classes) > 10


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A config that trains the tiny model for one step on the tiny dataset."""
    root = tmp_path_factory.mktemp("errors")
    cfg = tiny_config(make_tiny_dataset(root / "data"), root / "work", num_epoch=1)
    return write_config(cfg, root / "cfg.yaml")


def test_main_user_error_is_one_line_with_status_2(tiny_run):
    proc = subprocess.run([sys.executable, "main.py", "--config", str(tiny_run), "--device", "nonsense"],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --device 'nonsense'") and proc.stderr.count("\n") == 1


def test_main_bug_inside_the_model_keeps_its_traceback(tiny_run, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        import main
        import tests.train_support  # registers the tiny config's model, as a user's launcher would
        from modules.resnet import ResNet

        def forward(self, *args, **kwargs):
            raise RuntimeError("boom inside the model")

        ResNet.forward = forward  # the backbone: a bug deep inside the model
        sys.exit(main.cli(["--config", {str(tiny_run)!r}, "--overwrite"]))
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("RuntimeError: boom inside the model")
    assert "error: " not in proc.stderr


def _planted_bug(kind: type[Exception]):
    """A method that fails as a bug in a feeder would, with an exception of `kind`."""
    def planted(self, *args, **kwargs):
        raise kind("a bug planted in the feeder")
    return planted


@pytest.mark.parametrize("method, kind", [("__getitem__", TypeError), ("__getitem__", KeyError),
                                          ("__getitem__", ValueError), ("__init__", ValueError),
                                          ("__init__", OSError)])
def test_main_bug_inside_a_feeder_keeps_its_traceback(tiny_run, monkeypatch, capsys, method, kind):
    """Only user errors become one line: a feeder's own exception propagates from main.cli (to
    its traceback), however much it looks like a config problem (KeyError, ValueError, OSError)."""
    monkeypatch.setattr(f"dataset.feeder.BaseFeeder.{method}", _planted_bug(kind))
    with pytest.raises(kind, match="a bug planted in the feeder") as raised:
        main.cli(["--config", str(tiny_run), "--overwrite"])
    assert not isinstance(raised.value, UserError)
    assert raised.traceback[-1].name == "planted"  # the traceback ends where the bug is
    assert "error: " not in capsys.readouterr().err


def test_tool_bug_inside_the_model_keeps_its_traceback(infer_assets, monkeypatch):
    def forward(self, *args, **kwargs):
        raise RuntimeError("boom inside the model")

    monkeypatch.setattr("modules.resnet.ResNet.forward", forward)
    with pytest.raises(RuntimeError, match="boom inside the model"):
        test_one_video.main(["--model_path", str(infer_assets["ours"]), "--video_path",
                             str(infer_assets["folder"]), "--device", "cpu"])


def test_tool_user_error_is_one_line_with_status_2(infer_assets, tmp_path, capsys):
    missing = tmp_path / "no_such_clip.mp4"
    assert test_one_video.main(["--model_path", str(infer_assets["ours"]), "--video_path", str(missing),
                                "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: video not found: {missing}") and err.count("\n") == 1


def test_only_run_cli_prints_error_lines():
    """The CLIs report user errors through run_cli (one format, UserError only), not by hand."""
    printers = []
    for path in sorted(REPO_ROOT.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in ("tests", "bench", ".venv", "software") or rel.parts[0].startswith("."):
            continue
        if 'print(f"error: ' in path.read_text(encoding="utf-8"):
            printers.append(str(rel))
    assert printers == ["utils/errors.py"]


def test_missing_gloss_dict_names_the_datasets_preprocessing(tmp_path, capsys):
    import main

    assert main.cli(["--config", str(REPO_ROOT / "config" / "CSL.yaml"), "--work-dir", str(tmp_path / "w"),
                     "--set", f"dataset_info.dict_path={tmp_path / 'gloss_dict.npy'}"]) == 2
    err = capsys.readouterr().err
    assert "gloss dictionary not found" in err and "`python preprocess/dataset_preprocess-CSL.py" in err
