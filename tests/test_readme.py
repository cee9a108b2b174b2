"""The README works as written: its step-by-step blocks run in order on a copy of the checkout (at
`--size tiny`, 10 epochs), every other command names a tool those blocks run, it stays under 400
lines, and its Layout table lists every module of the tree."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infer_support import runner_listing

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
WALKTHROUGH = "## Step by step, on the synthetic data"
# The two changes that keep the run short; everything else runs exactly as the README writes it.
SHORTER = (("--size demo", "--size tiny"),
           ("python main.py --config config/demo.yaml --work-dir work_dir/demo",
            "python main.py --config config/demo.yaml --work-dir work_dir/demo --num-epoch 10"))
# Commands outside the step-by-step blocks that those blocks cannot run, and why.
NOT_RUN = {"torchrun": "several GPUs", "srun": "a SLURM cluster", "curl": "a running app.py (tests/test_app.py)",
           "make": "the Makefile's targets (CI runs make test; make demo is the step-by-step blocks)",
           "python app.py": "a server (tests/test_app.py)", "python -m evaluation.wer": "tests/test_eval_scoring.py"}


def sections(text: str) -> dict[str, str]:
    """README sections by their `## ` heading."""
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def bash_blocks(text: str) -> list[str]:
    """The ```bash blocks of `text`, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.split("  #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def tool(command: str) -> str:
    """What a command runs: `python X.py`, `python -m M`, or the program's name."""
    words = command.split()
    if words[0] == "python":
        return " ".join(words[:3]) if words[1] == "-m" else " ".join(words[:2])
    return words[0]


def test_readme_is_short_enough():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"README.md has {lines} lines; move reference material to docs/"


def test_every_readme_command_is_a_step_by_step_tool_or_says_why_not():
    parts = sections(README.read_text(encoding="utf-8"))
    walked = {tool(c) for block in bash_blocks(parts[WALKTHROUGH]) for c in commands(block)}
    assert {"python main.py", "python tune_lm.py", "python export.py", "python run_onnx.py"} <= walked
    for title, body in parts.items():
        if title == WALKTHROUGH:
            continue
        for block in bash_blocks(body):
            for command in commands(block):
                name = tool(command)
                assert name in walked or any(name.startswith(k) for k in NOT_RUN), \
                    f"{title}: {command!r} runs {name!r}, which the step-by-step blocks never run"


def layout_rows(text: str) -> dict[str, str]:
    """The Layout table: first column's text -> second column's."""
    body = sections(text)["## Layout"]
    rows = [line.split(" | ", 1) for line in body.splitlines() if line.startswith("| `")]
    return {path.strip("| "): what for path, what in rows}


def test_layout_table_lists_every_module():
    rows = layout_rows(README.read_text(encoding="utf-8"))
    named = " ".join(rows)
    listed = set(re.findall(r"`([\w./-]+)`", named))
    for path in sorted(REPO_ROOT.glob("*.py")):
        assert path.name in listed, f"Layout: {path.name} has no row"
    for package in sorted(p.parent for p in REPO_ROOT.glob("*/__init__.py")):
        if package.name == "tests":
            continue
        row = rows.get(f"`{package.name}/`")
        assert row is not None, f"Layout: {package.name}/ has no row"
        described = set(re.findall(r"`([\w.-]+\.py)`", row))
        modules = {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
        assert modules - described == set(), f"Layout, {package.name}/: {sorted(modules - described)} missing"
        unknown = described - modules - {p.name for p in REPO_ROOT.glob("*.py")}  # a command named in passing
        assert unknown == set(), f"Layout, {package.name}/: {sorted(unknown)} do not exist"


def checkout_copy(dest: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files, as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_step_by_step_runs_as_written(tmp_path):
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("git or the checkout's .git is missing: no list of the checkout's files")
    text = README.read_text(encoding="utf-8")
    blocks = bash_blocks(sections(text)[WALKTHROUGH])
    script = "\n".join(blocks)
    for long, short in SHORTER:
        assert long in script, f"the step-by-step blocks no longer contain {long!r}"
        script = script.replace(long, short)
    install = "make install\n"
    assert script.startswith(install)  # what CI runs on a fresh clone (make test installs first);
    script = script[len(install):]      # here the running interpreter's venv stands in for it
    repo = checkout_copy(tmp_path / "clone")
    venv = Path(sys.prefix)
    assert (venv / "bin" / "activate").is_file(), "the suite must run from the venv make install makes"
    (repo / ".venv").symlink_to(venv)
    (repo / "run_onnx.py").write_text(runner_listing(repo), encoding="utf-8")  # "saved as run_onnx.py"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # a fresh shell: no venv on the PATH until activated
    done = subprocess.run(["bash", "-euxc", script], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    glosses = [line for line in done.stdout.splitlines() if line.startswith("output glosses:")]
    assert glosses and glosses[0].removeprefix("output glosses: ").strip()  # test_one_video.py
    assert (repo / "cam").is_dir() and (repo / "model.onnx").is_file()
    assert "WER without LM" in done.stdout and "(the beam search of width 10, as with the LM" in done.stdout


@pytest.mark.parametrize("command", [["main.py", "--help"], ["tune_lm.py", "--help"],
                                     ["-m", "dataset.synthetic", "--help"],
                                     ["preprocess/dataset_preprocess.py", "--help"]])
def test_outside_the_venv_one_line_says_how_to_install(command):
    # -S: no site-packages, as a system python3 without the requirements
    done = subprocess.run([sys.executable, "-S", *command], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "torch" in done.stderr and "make install" in done.stderr and "source .venv/bin/activate" in done.stderr
