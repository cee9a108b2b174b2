"""Full-scale rehearsal: PHOENIX-2014's video counts and lengths through the whole pipeline.

    .venv/bin/python bench/full_scale.py --work /work/fullscale-data              # the real counts
    .venv/bin/python bench/full_scale.py --fraction 0.01                          # 1 % (seconds-minutes)

Stages, each a process of its own as a user runs it, timed and watched:

1. generate: the synthetic generator's `--size phoenix` (PHOENIX-2014's 5,672 / 540 / 629 videos,
   its dev/test gloss counts per sentence, about 141 frames a video; dataset/synthetic.py says
   which figures are published and which assumed), camera-like frames rendered at 1/`--scale` of
   PHOENIX's 210x260 in each dimension;
2. preprocess: `preprocess/dataset_preprocess.py -p -m` to 1/`--scale` of 256x256;
3. pack: the same script with `--pack` (JPEG, the default);
4. start-up checks: main.py's `build_run` (every check, model and loaders built), once reading the
   per-frame files (its check stats every frame file of every video) and once the pack;
5. train: `--steps` steps of `config/demo.yaml` (a small ResNet18 STF-Net, not the published
   ResNet34) with `num_worker` 2 loader processes, from the pack;
6. evaluate: `--phase test` of the whole dev split with the trained weights (the demo config's
   greedy decoding, scored by the Python scorer).

Per stage it prints the wall time, frames/s, the peak resident memory (VmHWM) of the stage's
process and of its largest child (pool or loader worker), sampled from /proc, and the bytes its
outputs take on disk (allocated blocks). The same stages also run on a sample (`--sample`, a
fraction of the videos) twice, at the small frame size and at full size (210x260 raw, 256x256
resized, 224 px crops), so that the cost per frame at full size is measured, not assumed; the
extrapolation to the real dataset at full size is then

    full-count time x (full-size sample s/frame / small sample s/frame) x (published frames / ours)

for the time (for training: one epoch of PHOENIX-2014's 799,006 frames at the full-size sample's
frames/s), the same with bytes per frame for the disk, and for memory the full-count peak plus
what the full-size sample's peak adds to the small one's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from dataset.layout import frames_root, raw_frames_root  # noqa: E402
from dataset.registry import dataset_spec  # noqa: E402
from preprocess.common import info_entries  # noqa: E402
from preprocess.pack import human  # noqa: E402

DATASET = "phoenix2014"
SPEC = dataset_spec(DATASET)  # its registry entry, resolved once
# Published PHOENIX-2014 frame counts (Koller et al., CVIU 2015) and the sizes the recipe trains at.
PUBLISHED_FRAMES = {"train": 799_006, "dev": 75_186, "test": 89_472}
FULL_RESIZED, FULL_CROP = 256, 224
DEMO_RES, DEMO_CROP = 56, 48  # config/demo.yaml: crop/resized of the small frames keep its ratio


@dataclass
class Stage:
    """What one stage measured."""

    name: str
    wall_s: float
    frames: int
    parent_peak_kib: int
    child_peaks_kib: list[int] = field(default_factory=list)
    disk_bytes: int = 0
    work_s: float | None = None  # training / evaluation without the process's start-up

    @property
    def seconds(self) -> float:
        """The stage's own work: `work_s` where the start-up is set apart, else the wall time."""
        return self.wall_s if self.work_s is None else self.work_s

    @property
    def frames_per_s(self) -> float:
        """Frames handled per second of the stage's own work."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    @property
    def peak_mib(self) -> float:
        """The largest peak of the stage's processes, MiB."""
        return max([self.parent_peak_kib, *self.child_peaks_kib]) / 1024


# ----------------------------------------------------------------------------- measuring


def _children(pid: int, parents: dict[int, int]) -> list[int]:
    """Every descendant of `pid` in a {pid: ppid} table."""
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == current]
        found += kids
        frontier += kids
    return found


def _process_table() -> dict[int, int]:
    """{pid: parent pid} of every process (Linux /proc)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def status_kib(pid: int, *fields: str) -> tuple[int, ...]:
    """Memory fields (VmRSS, VmHWM, ...) of a live process's /proc status, in KiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return tuple(int(status[field].split()[0]) for field in fields)


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process in KiB, 0 if it is gone."""
    try:
        return status_kib(pid, "VmHWM")[0]
    except (OSError, KeyError):  # gone, or a zombie without memory fields
        return 0


class PeakWatcher(threading.Thread):
    """Samples the peak RSS of a process and each of its descendants until stopped."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        """Poll until `done`."""
        while not self.done.is_set():
            for pid in [self.pid, *_children(self.pid, _process_table())]:
                self.peaks[pid] = max(self.peaks.get(pid, 0), peak_rss_kib(pid))
            self.done.wait(self.interval)


def disk_bytes(*paths: Path) -> int:
    """Bytes allocated on disk by the files below `paths` (blocks, so small files count fully)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_blocks * 512
            continue
        for folder, _dirs, files in os.walk(path):
            total += sum(os.stat(os.path.join(folder, name)).st_blocks * 512 for name in files)
    return total


def run_stage(name: str, cmd: list[str], frames: int, log: Path, outputs: list[Path]) -> Stage:
    """Run one stage's command (output to `log`), timing it and watching its processes' memory."""
    with log.open("a") as out:
        out.write(f"\n== {name}: {' '.join(cmd)}\n")
        out.flush()
        start = time.perf_counter()
        process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        watcher = PeakWatcher(process.pid)
        watcher.start()
        status = process.wait()
        wall = time.perf_counter() - start
        watcher.done.set()
        watcher.join()
    if status != 0:
        raise SystemExit(f"stage {name} failed (exit status {status}); its output is in {log}")
    peaks = dict(watcher.peaks)
    parent = peaks.pop(process.pid, 0)
    return Stage(name, wall, frames, parent, sorted(peaks.values(), reverse=True),
                 disk_bytes(*[p for p in outputs if p.exists()]))


# ----------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class Setup:
    """One pipeline run: where, how many videos, which frame sizes."""

    work: Path
    fraction: float
    raw_size: tuple[int, int]      # (width, height) rendered
    resized: int                   # square side preprocessed to
    crop: int                      # training crop
    steps: int
    workers: int

    @property
    def res_tag(self) -> str:
        """The preprocessing's resolution tag."""
        return f"{self.resized}x{self.resized}px"


def split_frames(out_dir: Path) -> dict[str, list[int]]:
    """Frames of every video of every split, from the info files preprocessing wrote."""
    lengths = {}
    for split in SPEC.splits:
        info = np.load(out_dir / f"{split}_info.npy", allow_pickle=True).item()
        lengths[split] = [int(entry["num_frames"]) for entry in info_entries(info)]
    return lengths


def main_args(setup: Setup, packed: bool, work_dir: Path) -> list[str]:
    """main.py's options for this setup's data, config/demo.yaml with 2 loader workers."""
    root, out = setup.work / "raw", setup.work / "preprocess"
    return ["--config", str(REPO / "config" / "demo.yaml"), "--work-dir", str(work_dir), "--overwrite",
            "--set", f"dataset_info.dataset_root={root}", "--set", f"dataset_info.dict_path={out / 'gloss_dict.npy'}",
            "--set", f"feeder_args.frames_res={setup.res_tag}", "--set", f"feeder_args.input_size={setup.crop}",
            "--set", f"feeder_args.packed={str(packed).lower()}", "--set", f"num_worker={setup.workers}",
            "--set", "progress_bar=false"]


def run_pipeline(setup: Setup, log: Path, say) -> tuple[list[Stage], dict[str, list[int]]]:
    """Every stage on one setup; returns the stages and the frames of each split's videos."""
    py = sys.executable
    root, out = setup.work / "raw", setup.work / "preprocess"
    width, height = setup.raw_size
    stages = []

    def stage(name: str, cmd: list[str], frames: int, outputs: list[Path]) -> None:
        stages.append(run_stage(name, cmd, frames, log, outputs))
        say(f"  {name}: {stages[-1].wall_s:.1f} s")

    stage("generate", [py, "-m", "dataset.synthetic", "--format", DATASET, "--out", str(root), "--size", "phoenix",
                       "--style", "camera", "--frame-size", f"{width}x{height}", "--fraction", str(setup.fraction),
                       "--workers", str(setup.workers)], 0, [raw_frames_root(SPEC, root)])
    prep = [py, "preprocess/dataset_preprocess.py", "--dataset-root", str(root), "--output-dir", str(out),
            "--output-res", setup.res_tag, "--workers", str(setup.workers)]
    stage("preprocess (-p -m)", [*prep, "-p", "-m"], 0, [frames_root(SPEC, root, setup.res_tag), out])
    lengths = split_frames(out)
    total = sum(sum(v) for v in lengths.values())
    stages[0].frames = stages[1].frames = total
    stage("pack (--pack)", [*prep, "--pack"], total, [out / f"packed-{setup.res_tag}"])
    startup = [py, str(Path(__file__).resolve()), "startup"]
    stage("start-up checks, per-frame files", [*startup, *main_args(setup, False, setup.work / "startup")],
          total, [])
    stage("start-up checks, pack", [*startup, *main_args(setup, True, setup.work / "startup")], total, [])
    train_dir = setup.work / "train"
    batch = 4  # config/demo.yaml's batch_size
    train_frames = round(setup.steps * batch * statistics.mean(lengths["train"]))  # expected frames read
    stage(f"train, {setup.steps} steps ({setup.workers} workers)",
          [py, "main.py", *main_args(setup, True, train_dir), "--set", f"max_steps={setup.steps}",
           "--set", "eval_splits=[]", "--set", "save_interval=1000"], train_frames, [train_dir])
    # The loop's own time (main.py's train_time_s: loader start included, start-up checks not).
    stages[-1].work_s = json.loads((train_dir / "train_results.json").read_text())["train_time_s"]
    stage("evaluate dev", [py, "main.py", *main_args(setup, True, setup.work / "eval"), "--phase", "test",
                           "--load-weights", str(train_dir / "last.pt"), "--set", "eval_splits=[dev]"],
          sum(lengths["dev"]), [setup.work / "eval"])
    # Without the start-up that the same checks took alone (an estimate: the process minus that stage).
    stages[-1].work_s = max(stages[-1].wall_s - stages[4].wall_s, 1e-3)
    return stages, lengths


def startup_only(argv: list[str]) -> int:
    """main.py's start-up: resolve the config and build the run (every check), then stop."""
    from training.run import build_run
    from main import parser
    from utils.config import resolve_config
    from utils.errors import run_cli

    def build() -> None:
        cfg, args = resolve_config(argv, parser())
        build_run(cfg, overwrite=args.overwrite, config_file=args.config).lock.release()

    return run_cli(build)


# ----------------------------------------------------------------------------- the table


def extrapolate(full: Stage, small: Stage, large: Stage, ours: int, published: int
                ) -> tuple[float, float, int, float]:
    """(per-frame time ratio full/small size, seconds, bytes, peak MiB) of a stage on the real
    dataset at full frame size, from the full-count run and the two sample runs."""
    ratio = (large.seconds / max(large.frames, 1)) / (small.seconds / max(small.frames, 1))
    seconds = full.seconds * ratio * published / max(ours, 1)
    byte_ratio = ((large.disk_bytes / max(large.frames, 1)) / (small.disk_bytes / small.frames)
                  if small.disk_bytes and small.frames else 0.0)
    return ratio, seconds, round(full.disk_bytes * byte_ratio * published / max(ours, 1)), \
        full.peak_mib + max(0.0, large.peak_mib - small.peak_mib)


def table(full: list[Stage], small: list[Stage] | None, large: list[Stage] | None,
          lengths: dict[str, list[int]]) -> list[str]:
    """The markdown table of every stage (without the sample runs, no extrapolation)."""
    ours = {"all": sum(sum(v) for v in lengths.values()), "train": sum(lengths["train"]), "dev": sum(lengths["dev"])}
    published_all = sum(PUBLISHED_FRAMES.values())
    rows = ["| stage | wall | frames | frames/s | peak RSS: process / children (largest) | on disk "
            "| s/frame full / small size (sample) | real dataset, full size: time | bytes | peak RSS |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for i, f in enumerate(full):
        children = (f"{len(f.child_peaks_kib)} ({f.child_peaks_kib[0] / 1024:.0f} MiB)"
                    if f.child_peaks_kib else "none")
        own = "" if f.work_s is None else f" ({f.work_s:.1f} s without start-up)"
        measured = (f"| {f.name} | {f.wall_s:.1f} s{own} | {f.frames:,} | {f.frames_per_s:,.0f} | "
                    f"{f.parent_peak_kib / 1024:.0f} MiB / {children} | {human(f.disk_bytes)} |")
        if small is None or large is None:
            rows.append(measured + " - | - | - | - |")
            continue
        s, g = small[i], large[i]
        if f.name.startswith("train"):
            ours_n, published = f.frames, f.frames  # an epoch instead: below
        elif f.name.startswith("evaluate"):
            ours_n, published = ours["dev"], PUBLISHED_FRAMES["dev"]
        else:
            ours_n, published = ours["all"], published_all
        ratio, seconds, nbytes, peak = extrapolate(f, s, g, ours_n, published)
        when = ""
        if f.name.startswith("train"):  # an epoch of the published frames at the full-size sample's rate
            seconds, when = PUBLISHED_FRAMES["train"] / g.frames_per_s, "an epoch: "
        rows.append(f"{measured} {ratio:.2f}x | {when}{seconds / 60:.1f} min | {human(nbytes)} | "
                    f"{peak:.0f} MiB |")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="an empty or new folder for the data (default: a temporary one, "
                        "removed at the end); the full run needs about 15 GB")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="part of PHOENIX-2014's videos to generate (1 = 5,672 / 540 / 629)")
    parser.add_argument("--scale", type=int, default=4,
                        help="render and preprocess frames this many times smaller in each dimension")
    parser.add_argument("--sample", type=float, default=0.005,
                        help="part of the videos run at both frame sizes for the per-frame costs "
                        "(0: none, no extrapolation)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of the full-count run")
    parser.add_argument("--sample-steps", type=int, default=4, help="training steps of the sample runs")
    parser.add_argument("--workers", type=int, default=2, help="preprocessing and loader processes")
    parser.add_argument("--keep", action="store_true", help="keep the data in --work")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the full-count pipeline and the two sample pipelines; print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["startup"]:
        return startup_only(argv[1:])
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if work.exists() and any(work.iterdir()):
            raise SystemExit(f"--work {work} is not empty: pass a new or empty folder")
        work.mkdir(parents=True, exist_ok=True)
        log = work / "full_scale.log"
        raw_w, raw_h = SPEC.raw_frame_size
        small = dict(raw_size=(raw_w // args.scale, raw_h // args.scale), resized=FULL_RESIZED // args.scale,
                     crop=FULL_RESIZED // args.scale * DEMO_CROP // DEMO_RES)
        large = dict(raw_size=(raw_w, raw_h), resized=FULL_RESIZED, crop=FULL_CROP)
        say = lambda text: print(text, flush=True)  # noqa: E731
        say(f"frames {small['raw_size'][0]}x{small['raw_size'][1]} raw, {small['resized']} px resized, "
            f"{small['crop']} px crops (1/{args.scale} of {raw_w}x{raw_h}, {FULL_RESIZED}, {FULL_CROP} in each "
            f"dimension); log: {log}")
        runs = {}
        plan = [("full", args.fraction, small, args.steps)]
        if args.sample:
            plan += [("sample, small frames", args.sample, small, args.sample_steps),
                     ("sample, full-size frames", args.sample, large, args.sample_steps)]
        for name, fraction, sizes, steps in plan:
            say(f"{name}: fraction {fraction}")
            setup = Setup(work / name.replace(" ", "_").replace(",", ""), fraction, steps=steps,
                          workers=args.workers, **sizes)
            runs[name] = run_pipeline(setup, log, say)
            if not args.keep:
                subprocess.run(["rm", "-rf", str(setup.work)], check=True)
        full, lengths = runs["full"]
        for split, values in lengths.items():
            say(f"{split}: {len(values):,} videos, {sum(values):,} frames (mean {statistics.mean(values):.1f}, "
                f"{min(values)}-{max(values)}); published {PUBLISHED_FRAMES[split]:,}")
        samples = [runs[name][0] if name in runs else None
                   for name in ("sample, small frames", "sample, full-size frames")]
        for line in table(full, *samples, lengths):
            say(line)
        say("json: " + json.dumps({name: [vars(s) for s in stages] for name, (stages, _) in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
