"""What the tools say and write for the small things a newcomer meets first: a case-only typo, the
other spelling of an option, warnings as one line, the empty-CTM note, tuning's notes, curves.png,
several config typos at once, where the frames come from, and what git ignores."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import test_one_video
from dataset.registry import DATASETS, dataset_spec
from decoding.config import DecodeConfig
from decoding.split_logits import SplitLogits
from decoding.tuning import tune
from evaluation.wer import ScoringWarning
from tests.stm_support import write_stm
from utils.config import ConfigError, check_kwargs, resolve_config
from utils.errors import closest_key
from utils.record import curves_figure

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_a_name_differing_in_case_only_is_suggested():
    assert closest_key("csl", ["phoenix2014", "CSL-Daily", "CSL"]) == "; did you mean 'CSL'?"
    with pytest.raises(ConfigError, match="did you mean 'CSL'"):
        dataset_spec("csl")


def test_single_video_tools_take_both_spellings_of_their_options():
    dashed = test_one_video.build_parser().parse_args(["--model-path", "m.pt", "--video-path", "v.mp4",
                                                       "--dict-path", "d.npy", "--max-frames-num", "9"])
    underscored = test_one_video.build_parser().parse_args(["--model_path", "m.pt", "--video_path", "v.mp4",
                                                            "--dict_path", "d.npy", "--max_frames_num", "9"])
    assert vars(dashed) == vars(underscored)


def test_two_typos_in_a_config_are_both_named(tmp_path):
    config = tmp_path / "typos.yaml"
    config.write_text(f"base: {REPO_ROOT / 'config' / 'demo.yaml'}\nnum_epochs: 3\n"
                      f"optimizer_args:\n  base_l: 0.1\n")
    with pytest.raises(ConfigError) as raised:
        resolve_config(["--config", str(config)])
    message = str(raised.value)
    assert "2 unknown keys" in message
    assert "'num_epochs'; did you mean 'num_epoch'?" in message
    assert "'optimizer_args.base_l'; did you mean 'base_lr'?" in message

    def build(hidden_size: int = 1, base_width: int = 1) -> None:
        """A constructor."""

    with pytest.raises(ConfigError, match="2 unknown keys .*'model_args.hiden_size'.*'model_args.basewidth'"):
        check_kwargs(build, {"hiden_size": 3, "basewidth": 3}, "model_args")


def test_scorer_warning_is_one_line_and_names_the_errors_sclite_counts(tmp_path):
    stm, ctm = tmp_path / "ref.stm", tmp_path / "empty.ctm"
    write_stm(stm, [("v1", "s1", ["A", "B", "C"])])
    ctm.write_text("")
    done = subprocess.run([sys.executable, "-m", "evaluation.wer", str(stm), str(ctm), "--dataset", "phoenix2014"],
                          cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "ScoringWarning" not in lines[0]
    assert "counts as an error" in lines[0] and "one substitution and the rest deletions" in lines[0]
    assert "WER 100.00%" in done.stdout or "100.00" in done.stdout


def test_tuning_notes_name_the_decoding_not_a_temporary_file(tmp_path):
    stm = tmp_path / "dev.stm"
    write_stm(stm, [("v1", "s1", ["A", "B"]), ("v2", "s1", ["B"])])
    logits = torch.full((2, 6, 3), -20.0)
    logits[:, :, 0] = 0.0  # blank everywhere: every decoding is empty
    split = SplitLogits(ids=["v1", "v2"], logits=logits, lengths=torch.tensor([6, 6]),
                        glosses=["", "A", "B"], blank_id=0)
    lm = tmp_path / "lm.arpa"
    lm.write_text("\\data\\\nngram 1=4\n\n\\1-grams:\n-0.5\t<s>\n-0.5\t</s>\n-0.5\tA\n-0.5\tB\n\n\\end\\\n")
    cfg = DecodeConfig.recipe().updated({"mode": "beam", "lm_path": str(lm), "beam_width": 2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tune(split, cfg, [(0.5, 0.0), (1.0, 0.0)], stm, dataset_spec("CSL"))
    notes = [str(w.message) for w in caught if issubclass(w.category, ScoringWarning)]
    assert len(notes) == 1, notes  # one note for the whole grid
    assert "the decoding without LM holds no hypotheses" in notes[0] and "2 more of the 3 decodings" in notes[0]
    assert "hyp.ctm" not in notes[0]  # the temporary CTM the user never sees


def test_curves_have_whole_epochs_and_legends_beside_the_panels():
    rows = [{"epoch": str(e), "loss": str(10.0 / (e + 1)), "loss_SeqCTC": str(5.0 / (e + 1)),
             "dev_wer": str(90.0 - 10 * e), "dev_conv_wer": str(95.0 - 10 * e)} for e in range(3)]
    fig = curves_figure(rows)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        legend = ax.get_legend().get_window_extent(renderer)
        assert legend.x0 >= ax.get_window_extent(renderer).x1  # beside the panel, over no curve


def test_git_ignores_every_datasets_link_and_preprocessing_output():
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("git or the checkout's .git is missing")
    paths = [p for spec in DATASETS.values() for p in (spec.default_root.split("/")[0] + "/" +
                                                          spec.default_root.split("/")[1],
                                                          f"{spec.output_dir}/gloss_dict.npy")]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert sorted(done.stdout.split()) == sorted(paths)
