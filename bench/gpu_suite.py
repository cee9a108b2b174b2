"""One-shot GPU measurement suite: training step, compile, loader and decoding; a table and a JSON.

    python bench/gpu_suite.py OUT_DIR                  # on a CUDA machine: about 7 minutes in all
    python bench/gpu_suite.py OUT_DIR --dry-run        # the CPU at tiny sizes (every code path)

Writes OUT_DIR/gpu_suite.md (the tables) and OUT_DIR/gpu_suite.json (every figure, the sizes,
the machine and each section's status). Each section runs in its own process under a hard
time limit, its budget plus what earlier sections left unused, never past the total (--budget-s,
420 s for the real run: with start-up it fits in 8 minutes); a section that runs out is stopped
and recorded as timed out with what it had measured, and sections left without time are
recorded as skipped. The sections:

- step: one training step (forward, loss, backward, Adam) of the published model (ResNet34,
  224 crops, batch 2) at 100, 200 and 230 frames, ours against the original's Conv3d
  formulation, in float32, fp16 autocast (with a grad scaler, as the original trains) and bf16
  autocast, alternating the two (A, B, B, A, ...) on the same weights and input; median seconds
  per step, the per-pair ratio and the peak GPU memory of each;
- decode: the dev-size batched beam search (540 sentences, <= 50 steps, 1296 classes, beam 10),
  without and with a 3-gram LM, on the GPU and on the CPU (alternating rounds);
- loader: frames per second one loader worker feeds (one process, one thread, the training
  augmentation, 224 crops of 256x256 frames) from per-frame PNG files (dataset/feeder.py) and from
  the JPEG pack (dataset/packed.py), on camera-like synthetic data that the suite generates and
  preprocesses; with the step's frames per second, the workers a GPU needs on each path;
- compile_default / compile_reduce_overhead: our step torch.compiled (utils/compile.py, what
  `--compile` trains with): compile time, eager vs compiled per-pair ratio, and the graphs
  compiled over 5 lengths (reduce-overhead, i.e. CUDA graphs, on lengths padded to buckets).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_step import LOSS_WEIGHTS, alternate, timed, train_step, video_batch  # noqa: E402
from utils.atomic import atomic_path  # noqa: E402
from utils.compile import BACKEND_ENV  # noqa: E402

SECTIONS = ("step", "decode", "loader", "compile_default", "compile_reduce_overhead")
OURS, ORIGINAL = "ours", "conv3d"
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (a killed section leaves its last complete JSON)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def conv3d_formulation() -> Callable[[torch.nn.Module], torch.nn.Module]:
    """The original's Conv3d formulation of a model (where it lives: change only this import)."""
    from tests.reference.conv3d import conv3d_reference

    return conv3d_reference


@dataclass(frozen=True)
class Sizes:
    """Everything the suite's work depends on: the real run's sizes or the dry run's tiny ones."""

    model_args: dict
    classes: int
    batch: int
    crop: int
    lengths: tuple[int, ...]
    warmup: int
    steps: int
    compile_lengths: tuple[int, ...]
    bucket: int
    data_size: str
    res: str
    loader_repeats: int
    decode_sequences: int
    decode_frames: int
    decode_rounds: int
    lm_sentences: int
    budgets: dict[str, float] = field(default_factory=dict)


PUBLISHED = {"c2d_type": "resnet34", "conv_type": 2}
REAL = Sizes(PUBLISHED, classes=1296, batch=2, crop=224, lengths=(100, 200, 230), warmup=1,
             steps=3, compile_lengths=(100, 130, 160, 200, 230), bucket=64, data_size="small",
             res="256x256px", loader_repeats=2, decode_sequences=540, decode_frames=50,
             decode_rounds=2, lm_sentences=5000,
             budgets={"step": 120, "decode": 40, "loader": 60, "compile_default": 100,
                      "compile_reduce_overhead": 100})
DRY = Sizes({"c2d_type": "resnet18", "conv_type": 2, "base_width": 4, "hidden_size": 16,
             "aux_dim": 8, "channels_last": False}, classes=16, batch=2, crop=32, lengths=(32,),
            warmup=1, steps=1, compile_lengths=(32, 40, 48), bucket=16, data_size="tiny",
            res="64x64px", loader_repeats=1, decode_sequences=8, decode_frames=12,
            decode_rounds=1, lm_sentences=50,
            budgets={"step": 120, "decode": 60, "loader": 90, "compile_default": 150,
                     "compile_reduce_overhead": 150})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (--section/--deadline/--result: how the suite runs one section)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_suite.md and gpu_suite.json")
    parser.add_argument("--dry-run", action="store_true", help="the CPU, tiny sizes (a test)")
    parser.add_argument("--device", help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--budget-s", type=float,
                        help="the whole run's time limit in seconds (default: the sections' "
                             "budgets added up, 420 s for the real run)")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every section's budget (a slow or busy machine, the tests)")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--section", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the parent: schedule, report

def section_timeouts(budgets: dict[str, float], total: float, elapsed: float, done: dict[str, float],
                     name: str) -> float:
    """Seconds `name` may run: its budget plus the budgets earlier sections left unused, never
    past what is left of `total` after `elapsed` seconds."""
    slack = sum(budgets[n] - used for n, used in done.items())
    return max(0.0, min(budgets[name] + slack, total - elapsed))


def run_sections(names: list[str], budgets: dict[str, float], total: float,
                 runner: Callable[[str, float], dict], min_s: float = 5.0) -> dict[str, dict]:
    """Run each section through `runner(name, timeout)` in turn; sections left with under
    `min_s` seconds are recorded as skipped, not started."""
    start, done, results = time.monotonic(), {}, {}
    for name in names:
        elapsed = time.monotonic() - start
        timeout = section_timeouts(budgets, total, elapsed, done, name)
        print(f"== {name}: budget {budgets[name]:.0f} s, may run {timeout:.0f} s "
              f"({elapsed:.0f} s of {total:.0f} s used)", flush=True)
        if timeout < min_s:
            results[name] = {"status": f"skipped: the run's {total:.0f} s budget was spent "
                                       f"({elapsed:.0f} s used)"}
            done[name] = budgets[name]
            continue
        began = time.monotonic()
        results[name] = runner(name, timeout)
        done[name] = time.monotonic() - began
        results[name]["wall_s"] = round(done[name], 1)
        print(f"   {name}: {results[name]['status']} in {done[name]:.0f} s", flush=True)
    return results


def section_runner(args: argparse.Namespace) -> Callable[[str, float], dict]:
    """A runner that starts this script for one section in a child process, killed at its timeout."""
    def run(name: str, timeout: float) -> dict:
        result = args.out / "sections" / f"{name}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        result.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), str(args.out), "--section", name,
               "--deadline", str(time.time() + timeout), "--result", str(result),
               "--device", args.device] + (["--dry-run"] if args.dry_run else [])
        try:
            proc = subprocess.run(cmd, timeout=timeout, capture_output=True, text=True)
            status = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            log = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as expired:
            status = f"timed out after {timeout:.1f} s (its budget): partial"
            log = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) \
                else (expired.stdout or "")
        data = json.loads(result.read_text()) if result.is_file() else {}
        if status != "done":
            data["log_tail"] = log[-2000:]
        return {"status": status, **data}
    return run


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    info = {"torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "device": str(device)}
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
    return info


def workers_needed(step_fps: float, worker_fps: float) -> int:
    """Loader workers that feed at least `step_fps` frames per second."""
    return max(1, math.ceil(step_fps / worker_fps))


def _fmt(value: float | None, digits: int = 3, unit: str = "") -> str:
    """A table cell: the value, or '-' where none was measured."""
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _mib(value: int | None) -> str:
    """Bytes as MiB for the table (CPU runs have no peak GPU memory)."""
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def markdown(report: dict) -> str:
    """The tables of one run."""
    m, sizes, res = report["machine"], report["sizes"], report["sections"]
    lines = ["# GPU suite (bench/gpu_suite.py)", ""]
    if report["dry_run"]:
        lines += ["**Dry run on the CPU at tiny sizes: it checks the code paths; none of these "
                  "figures measures anything.**", ""]
    lines += [f"{m.get('gpu', m['device'])}, torch {m['torch']}"
              + (f", CUDA {m['cuda']}, cuDNN {m['cudnn']} (TF32 convolutions {m['cudnn_tf32']})"
                 if "cuda" in m else "") + f"; {m['cpu_count']} CPUs. Model {sizes['model_args']}, "
              f"{sizes['classes']} classes, batch {sizes['batch']}, {sizes['crop']}x{sizes['crop']} "
              f"crops. Run took {report['wall_s']:.0f} s of its {report['budget_s']:.0f} s budget.", ""]
    lines += ["| section | status | wall s |", "|---|---|---|"]
    lines += [f"| {n} | {r['status']} | {_fmt(r.get('wall_s'), 0)} |" for n, r in res.items()]
    step = res.get("step", {})
    if step.get("rows"):
        lines += ["", f"## Training step (median of {sizes['steps']} alternating steps after "
                      f"{sizes['warmup']} warm-up)", "",
                  "| frames | precision | ours s/step | Conv3d s/step | Conv3d / ours | ours frames/s "
                  "| ours peak memory | Conv3d peak memory |", "|---|---|---|---|---|---|---|---|"]
        for r in step["rows"]:
            o, c = r.get(OURS, {}), r.get(ORIGINAL, {})
            lines.append(f"| {r['frames']} | {r['precision']} | {_fmt(o.get('s'))} | {_fmt(c.get('s'))} "
                         f"| {_fmt(r.get('ratio'), 2, 'x')} | {_fmt(r.get('ours_fps'), 0)} "
                         f"| {_mib(o.get('peak_bytes'))} | {_mib(c.get('peak_bytes'))} |"
                         + (f" {r['note']}" if r.get("note") else ""))
    loader = res.get("loader", {})
    if loader.get("paths"):
        steps = report.get("workers", {}).get("for", [])
        lines += ["", f"## Loader: frames/s one worker feeds ({loader['videos']} videos, mean "
                      f"{loader['mean_frames']:.0f} frames, {sizes['res']} frames, 1 thread)", "",
                  "| path | frames/s per worker |" + "".join(f" workers for {n} |" for n in steps),
                  "|---|---|" + "---|" * len(steps)]
        for path, fps in loader["paths"].items():
            need = report.get("workers", {}).get(path, [])
            lines.append(f"| {path} | {fps:.0f} |" + "".join(f" {n} |" for n in need))
    decode = res.get("decode", {})
    if decode.get("rates"):
        lines += ["", f"## Beam search, dev size ({sizes['decode_sequences']} sentences x <= "
                      f"{sizes['decode_frames']} steps, beam 10; best of alternating rounds)", "",
                  "| LM | " + " | ".join(f"{d} sentences/s" for d in decode["devices"]) + " | ratio |",
                  "|---|" + "---|" * (len(decode["devices"]) + 1)]
        for lm, rates in decode["rates"].items():
            values = [rates.get(d) for d in decode["devices"]]
            ratio = values[0] / values[-1] if len(values) == 2 and None not in values else None
            lines.append(f"| {lm} | " + " | ".join(_fmt(v, 1) for v in values)
                         + f" | {_fmt(ratio, 2, 'x')} |")
    for name in ("compile_default", "compile_reduce_overhead"):
        c = res.get(name, {})
        if c.get("mode"):
            lines += ["", f"## torch.compile mode={c['mode']}", "",
                      f"first step (compiling) {_fmt(c.get('compile_s'), 1, ' s')}; eager "
                      f"{_fmt(c.get('eager_s'))} s/step, compiled {_fmt(c.get('compiled_s'))} s/step "
                      f"at {c.get('ratio_frames')} frames: {_fmt(c.get('ratio'), 2, 'x')}; graphs "
                      f"after the first step: {c.get('graphs_first')}", "",
                      "| frames (padded to) | first step s | new graphs |", "|---|---|---|"]
            lines += [f"| {r['frames']} ({r['padded']}) | {r['s']:.2f} | {r['new_graphs']} |"
                      for r in c.get("lengths", [])]
    return "\n".join(lines) + "\n"


def derive_workers(report: dict) -> None:
    """Loader workers each step configuration needs on each path (step frames/s / worker's)."""
    rows = report["sections"].get("step", {}).get("rows", [])
    paths = report["sections"].get("loader", {}).get("paths", {})
    longest = [r for r in rows if r.get("ours_fps") and r["frames"] == max(x["frames"] for x in rows)]
    if not longest or not paths:
        return
    report["workers"] = {"for": [f"ours {r['precision']} at {r['frames']} frames" for r in longest]}
    for path, fps in paths.items():
        report["workers"][path] = [workers_needed(r["ours_fps"], fps) for r in longest]


def run_suite(args: argparse.Namespace) -> dict:
    """Run the chosen sections in child processes, write the JSON and the markdown."""
    sizes = DRY if args.dry_run else REAL
    sizes = replace(sizes, budgets={n: b * args.budget_scale for n, b in sizes.budgets.items()})
    device = torch.device(args.device)
    names = [n for n in args.sections.split(",") if n]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run the suite on a GPU machine, or --dry-run on the CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.budget_s is None:
        args.budget_s = float(sum(sizes.budgets[n] for n in names))
    start = time.monotonic()
    print(f"gpu suite on {device}{' (dry run)' if args.dry_run else ''}: budget {args.budget_s:.0f} s; "
          + ", ".join(f"{n} {sizes.budgets[n]:.0f} s" for n in names), flush=True)
    results = run_sections(names, sizes.budgets, args.budget_s, section_runner(args))
    report = {"dry_run": args.dry_run, "budget_s": args.budget_s, "machine": machine(device),
              "sizes": asdict(sizes), "sections": results,
              "wall_s": round(time.monotonic() - start, 1)}
    derive_workers(report)
    write_text(args.out / "gpu_suite.json", json.dumps(report, indent=1) + "\n")
    write_text(args.out / "gpu_suite.md", markdown(report))
    print(markdown(report))
    return report


# ---------------------------------------------------------------- the sections (child processes)

class Section:
    """One section's results, written to its JSON file after every measurement (a section killed
    at its time limit keeps what it measured), and its own deadline."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path, self.deadline, self.data = path, deadline, {}

    def save(self) -> None:
        """Write the results so far."""
        write_text(self.path, json.dumps(self.data, indent=1) + "\n")

    def left(self) -> float:
        """Seconds before the section's deadline."""
        return self.deadline - time.time()


def build_model(sizes: Sizes, device: torch.device) -> torch.nn.Module:
    """Our model at the suite's sizes, seeded, in training mode on `device`."""
    from slr_network import SLRModel

    torch.manual_seed(0)
    args = dict(sizes.model_args)
    return SLRModel(sizes.classes, args.pop("c2d_type"), args.pop("conv_type"),
                    loss_weights=LOSS_WEIGHTS, **args).train().to(device)


def peak_memory(fn: Callable[[], None], device: torch.device, peaks: list) -> Callable[[], None]:
    """`fn`, recording the peak GPU memory of each call into `peaks` (nothing on the CPU)."""
    def call() -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fn()
        if device.type == "cuda":
            peaks.append(torch.cuda.max_memory_allocated(device))
    return call


def step_section(sizes: Sizes, device: torch.device, out: Section) -> None:
    """Ours vs Conv3d training step at each length and precision, alternating."""
    ours = build_model(sizes, device)
    models = {OURS: ours, ORIGINAL: conv3d_formulation()(ours).train().to(device)}
    out.data["rows"] = rows = []
    for frames in sizes.lengths:
        batch = video_batch(sizes.batch, frames, sizes.crop, sizes.classes, device)
        for precision, dtype in PRECISIONS.items():
            row = {"frames": frames, "precision": precision}
            rows.append(row)
            if out.left() < 0:
                row["note"] = "skipped: section budget spent"
                out.save()
                continue
            began = time.time()
            try:
                peaks: dict[str, list] = {name: [] for name in models}
                calls = {}
                for name, model in models.items():
                    # A fresh optimizer per configuration: Adam's state starts alike for both.
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
                    calls[name] = peak_memory(
                        lambda m=model, o=optimizer, s=scaler, b=batch, d=dtype: train_step(m, o, b, d, scaler=s),
                        device, peaks[name])
                times = alternate(calls, sizes.warmup, sizes.steps, device)
            except torch.OutOfMemoryError as error:
                row["note"] = f"out of memory: {str(error).splitlines()[0][:120]}"
                torch.cuda.empty_cache()
                out.save()
                continue
            for name in models:
                row[name] = {"s": statistics.median(t[0] for t in times[name]),
                             "runs_s": [round(t[0], 4) for t in times[name]],
                             "peak_bytes": max(peaks[name]) if peaks[name] else None}
            row["ratio"] = statistics.median(c[0] / o[0] for o, c in zip(times[OURS], times[ORIGINAL]))
            row["ours_fps"] = sizes.batch * frames / row[OURS]["s"]
            row["wall_s"] = round(time.time() - began, 1)
            print(f"{frames} frames {precision}: ours {row[OURS]['s']:.3f} s, Conv3d "
                  f"{row[ORIGINAL]['s']:.3f} s, {row['ratio']:.2f}x", flush=True)
            out.save()


def decode_section(sizes: Sizes, device: torch.device, out: Section) -> None:
    """The dev-size beam search on `device` and on the CPU, plain and with a 3-gram LM."""
    from bench.decode import GlossGrammar, ctc_logits
    from decoding.build_lm import estimate_kneser_ney
    from decoding.config import DecodeConfig
    from decoding.decoder import Decoder

    grammar = GlossGrammar(sizes.classes, 0)
    corpus = [[f"G{c}" for c in grammar.sentence()] for _ in range(sizes.lm_sentences)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lm = estimate_kneser_ney(corpus, order=3)
    log_probs, lengths, _ = ctc_logits(grammar, sizes.decode_sequences, sizes.decode_frames,
                                       sizes.classes, 1)
    gloss_dict = {f"G{i}": [i, 1] for i in range(1, sizes.classes)}
    devices = [device, torch.device("cpu")] if device.type != "cpu" else [device]
    out.data["devices"] = [str(d) for d in devices]
    out.data["rates"] = {}
    plain = DecodeConfig.recipe().updated({"mode": "beam", "beam_width": 10})
    fused = plain.updated({"lm_weight": 0.5, "word_bonus": 1.0})
    for lm_name, cfg, model in (("none", plain, None), ("3-gram", fused, lm)):
        decoder = Decoder(cfg, gloss_dict, model, num_classes=sizes.classes)
        rates: dict[str, list[float]] = {str(d): [] for d in devices}
        inputs = {str(d): (log_probs.to(d), lengths.to(d)) for d in devices}
        for d in devices:
            decoder.decode(inputs[str(d)][0][:4], inputs[str(d)][1][:4])  # warm-up (LM tables)
        for round_ in range(sizes.decode_rounds):
            for d in (devices if round_ % 2 == 0 else devices[::-1]):
                seconds = timed(lambda dec=decoder, x=inputs[str(d)]: dec.decode(*x), d)[0]
                rates[str(d)].append(sizes.decode_sequences / seconds)
        out.data["rates"][lm_name] = {d: max(r) for d, r in rates.items()}
        print(f"decode, LM {lm_name}: {out.data['rates'][lm_name]}", flush=True)
        out.save()


def loader_section(sizes: Sizes, device: torch.device, out: Section, work: Path) -> None:
    """Frames/s one worker feeds from per-frame PNGs and from the JPEG pack."""
    import numpy as np

    from bench.feeder import videos_per_second
    from bench.train_epoch import prepare
    from dataset.feeder import BaseFeeder
    from dataset.feeder_options import FeederOptions
    from dataset.registry import dataset_spec

    began = time.time()
    root, pre = prepare(work, sizes.data_size, sizes.res, workers=max(2, os.cpu_count() or 2))
    out.data["prepare_s"] = round(time.time() - began, 1)
    gloss_dict = np.load(pre / "gloss_dict.npy", allow_pickle=True).item()
    common = dict(dataset=dataset_spec("phoenix2014"), mode="train", info_dir=pre)
    options = dict(input_size=sizes.crop, frames_res=sizes.res, temporal_min_len=8)
    feeders = {"PNG frames": BaseFeeder(str(root), gloss_dict, options=FeederOptions.recipe(**options), **common),
               "JPEG pack": BaseFeeder(str(root), gloss_dict, options=FeederOptions.recipe(packed=True, **options),
                                       **common)}
    lengths = feeders["PNG frames"].video_lengths()
    out.data.update(videos=len(lengths), mean_frames=statistics.mean(lengths), paths={})
    torch.set_num_threads(1)
    for feeder in feeders.values():
        videos_per_second(feeder, 0, False)  # warm the page cache
    rates: dict[str, list[float]] = {name: [] for name in feeders}
    for repeat in range(sizes.loader_repeats):
        for name, feeder in feeders.items():
            rates[name].append(videos_per_second(feeder, repeat, False) * statistics.mean(lengths))
            out.data["paths"][name] = max(rates[name])
            out.save()
    print(f"loader frames/s per worker: {out.data['paths']}", flush=True)


def compile_section(sizes: Sizes, device: torch.device, out: Section, mode: str) -> None:
    """Our step torch.compiled in `mode`: compile time, eager vs compiled, graphs over 5 lengths."""
    import copy

    from torch._dynamo.utils import counters

    from utils.compile import check_compile_mode, compile_for_training

    if sizes is DRY:  # Dynamo's capture alone: inductor takes minutes on a small CPU
        os.environ.setdefault(BACKEND_ENV, "eager")
    check_compile_mode(mode, device)
    bucket = sizes.bucket if mode == "reduce-overhead" else 1
    padded = [math.ceil(t / bucket) * bucket for t in sizes.compile_lengths]
    out.data.update(mode=mode, backend=os.environ.get(BACKEND_ENV, "inductor"),
                    bucket=bucket, lengths=[])
    eager = build_model(sizes, device)
    twin = copy.deepcopy(eager)
    runner = compile_for_training(twin, mode)
    optimizers = {"eager": torch.optim.Adam(eager.parameters(), lr=1e-4),
                  "compiled": torch.optim.Adam(twin.parameters(), lr=1e-4)}

    def batch_at(frames: int, to: int) -> tuple:
        """A batch of `frames`-frame videos padded to `to` frames (what a bucketing collate does)."""
        x, len_x, label, label_lgt = video_batch(sizes.batch, frames, sizes.crop, sizes.classes, device)
        if to > frames:
            x = torch.cat([x, x[:, -1:].expand(-1, to - frames, -1, -1, -1)], dim=1)
        return x, len_x, label, label_lgt

    first = batch_at(sizes.compile_lengths[0], padded[0])
    out.data["compile_s"] = timed(lambda: train_step(twin, optimizers["compiled"], first, None, runner),
                                  device)[0]
    out.data["graphs_first"] = counters["stats"]["unique_graphs"]
    out.data["ratio_frames"] = padded[0]
    out.save()
    calls = {"compiled": lambda: train_step(twin, optimizers["compiled"], first, None, runner),
             "eager": lambda: train_step(eager, optimizers["eager"], first, None)}
    times = alternate(calls, sizes.warmup, sizes.steps, device)
    out.data["eager_s"] = statistics.median(t[0] for t in times["eager"])
    out.data["compiled_s"] = statistics.median(t[0] for t in times["compiled"])
    out.data["ratio"] = statistics.median(e[0] / c[0] for c, e in zip(times["compiled"], times["eager"]))
    out.save()
    for frames, to in zip(sizes.compile_lengths[1:], padded[1:]):
        graphs = counters["stats"]["unique_graphs"]
        batch = batch_at(frames, to)
        seconds = timed(lambda b=batch: train_step(twin, optimizers["compiled"], b, None, runner),
                        device)[0]
        out.data["lengths"].append({"frames": frames, "padded": to, "s": seconds,
                                    "new_graphs": counters["stats"]["unique_graphs"] - graphs})
        out.save()
    print(f"compile {mode}: {out.data}", flush=True)


def run_section(args: argparse.Namespace) -> None:
    """The child process: one section, its results written as they come."""
    sizes = DRY if args.dry_run else REAL
    device = torch.device(args.device)
    out = Section(args.result, args.deadline)
    out.data["started"] = time.time()
    if args.section == "step":
        step_section(sizes, device, out)
    elif args.section == "decode":
        decode_section(sizes, device, out)
    elif args.section == "loader":
        with tempfile.TemporaryDirectory() as tmp:
            loader_section(sizes, device, out, Path(tmp))
    else:
        compile_section(sizes, device, out, args.section.removeprefix("compile_").replace("_", "-"))
    out.save()


def main(argv: list[str] | None = None) -> int:
    """Run the suite, or (internally) one of its sections."""
    args = parse_args(argv)
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    if args.section:
        run_section(args)
    else:
        run_suite(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
