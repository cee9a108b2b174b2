"""--overwrite moves only what runs wrote, only after every start-up check, and keeps the old run
in <work_dir>.previous until the new one has written its first checkpoint."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import main as main_module
from tests.train_support import make_tiny_dataset, tiny_config, write_config
from training.workdir import MANIFEST, previous_dir, read_manifest, record_outputs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny_data"))


def tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("inside", ["raw", "pre", "config"])
def test_overwrite_refuses_a_work_dir_holding_the_dataset_and_deletes_nothing(data, tmp_path, capsys, inside):
    holder = tmp_path / "holder"
    shutil.copytree(data["raw"], holder / "raw")
    shutil.copytree(data["pre"], holder / "pre")
    (holder / "log.txt").write_text("a run's log beside the data\n")  # looks like a run's output
    paths = {"raw": {"raw": holder / "raw", "pre": data["pre"]},
             "pre": {"raw": data["raw"], "pre": holder / "pre"}, "config": data}[inside]
    config_dir = holder if inside == "config" else tmp_path
    cfg = write_config(tiny_config(paths, holder, num_epoch=1, eval_splits=[]), config_dir / "run.yaml")
    before = tree(holder)
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert f"--overwrite refuses the work dir {holder}" in line
    assert {"raw": "dataset_root", "pre": "dict_path", "config": "--config"}[inside] in line
    assert tree(holder) == before and not previous_dir(holder).exists()


def test_overwrite_moves_only_run_outputs_aside_until_the_first_checkpoint(data, tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 0
    recorded = read_manifest(work)
    assert {"last.pt", "log.txt", "config.yaml", "train_results.json"} <= set(recorded)
    old_run = tree(work)
    (work / "notes.txt").write_text("mine")  # not the run's: --overwrite never touches it
    (work / "mine").mkdir()
    (work / "mine" / "data.bin").write_bytes(b"\x00\x01")
    ours = {"notes.txt": b"mine", "mine/data.bin": b"\x00\x01"}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the new run dies before its first checkpoint
    monkeypatch.setattr(main_module, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        main_module.main(["--config", str(cfg), "--overwrite"])
    monkeypatch.undo()
    aside = previous_dir(work)
    kept = tree(aside)
    assert {k: v for k, v in kept.items() if not k.startswith(".stfnet-moved")} == old_run
    assert not (work / "last.pt").exists()
    assert {k: v for k, v in tree(work).items() if k in ours} == ours
    # The rerun writes a checkpoint: only then is the old run deleted.
    assert main_module.cli(["--config", str(cfg)]) == 0
    assert not aside.exists() and (work / "last.pt").is_file()
    assert {k: v for k, v in tree(work).items() if k in ours} == ours


def test_overwrite_without_a_checkpoint_phase_discards_the_old_run_at_the_end(data, tmp_path):
    work = tmp_path / "run"
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg)]) == 0
    shutil.copy(work / "last.pt", tmp_path / "weights.pt")
    test_cfg = write_config(tiny_config(data, work, phase="test", eval_splits=["dev"]), tmp_path / "test.yaml")
    assert main_module.cli(["--config", str(test_cfg), "--overwrite", "--load-weights",
                            str(tmp_path / "weights.pt")]) == 0
    assert not previous_dir(work).exists() and not (work / "last.pt").exists()
    assert (work / "test_results.json").is_file()


def test_the_record_lists_only_run_outputs(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    (tmp_path / "mine.txt").write_text("y")
    (tmp_path / "epoch_3").mkdir()
    record_outputs(tmp_path)
    assert read_manifest(tmp_path) == ["epoch_3", "last.pt"]
    # An edited record cannot name anything else.
    (tmp_path / MANIFEST).write_text('{"written": ["mine.txt", "../x", "last.pt"]}')
    assert read_manifest(tmp_path) == ["last.pt"]


def test_a_foreign_previous_folder_is_refused(data, tmp_path, capsys):
    work = tmp_path / "run"
    work.mkdir()
    (tmp_path / "run.previous").mkdir()
    (tmp_path / "run.previous" / "thesis.tex").write_text("mine")
    cfg = write_config(tiny_config(data, work, num_epoch=1, eval_splits=[]), tmp_path / "run.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    assert "is not one it made" in one_error_line(capsys)
    assert (tmp_path / "run.previous" / "thesis.tex").read_text() == "mine"


def test_frames_of_a_later_video_are_checked_at_start(data, tmp_path, capsys):
    raw = tmp_path / "raw"
    shutil.copytree(data["raw"], raw)
    info = np.load(data["pre"] / "dev_info.npy", allow_pickle=True).item()
    last = info[max(k for k in info if isinstance(k, int))]
    frames = sorted((raw / "features" / "fullFrame-64x64px" / "dev" / last["fileid"]).rglob("*.png"))
    assert frames, "the tiny set's resized frames"
    frames[-1].unlink()
    work = tmp_path / "run"
    work.mkdir()
    (work / "best_model.pt").write_bytes(b"the previous run")
    cfg = write_config(tiny_config(data, work, dataset_info={"dataset_root": str(raw)}), tmp_path / "c.yaml")
    assert main_module.cli(["--config", str(cfg), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert "videos of the dev split cannot be read" in line and last["fileid"] in line
    assert tree(work) == {"best_model.pt": b"the previous run"}
