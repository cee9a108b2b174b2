"""STF-Net, CorrNet and VAC side by side: accuracy on the same synthetic data with the same seeds,
parameters, training step time and inference time.

    python bench/family.py train --data DIR --model corrnet --seeds 0 1 2 --epochs 20 --out R.jsonl
    python bench/family.py timing --out R.jsonl      # step and inference times, side by side
    python bench/family.py report R.jsonl            # the markdown table (docs/benchmarks.md)

`train` runs main.py (the same data pipeline, decoder and scorer for all three) on the demo's
synthetic PHOENIX-2014 set (DIR as `make demo-data` writes it: DIR/phoenix2014, DIR/preprocess)
with config/demo.yaml's schedule and frame size, each model at the demo's scale (ResNet18 of
base width 8, hidden size 256, one temporal pooling, plain linear classifier, from scratch) and
with its own published loss terms and weights; dev and test WER of the best dev checkpoint.
`timing` times one training step (forward, loss, backward, Adam) and one inference forward of the
three published-size networks (ResNet34 STF-Net, ResNet18 CorrNet and VAC, 1296 classes) on the
same clip, in rounds that alternate the models (A, B, C, then C, B, A, ...) so that a busy
machine slows each alike; medians and ratios to STF-Net.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main as main_module  # noqa: E402
from corrnet_network import CorrNetModel  # noqa: E402
from modules.criterions import total_loss  # noqa: E402
from slr_network import SLRModel  # noqa: E402
from utils.config import load_yaml  # noqa: E402
from vac_network import VACModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAMILY = {"stfnet": "slr_network.SLRModel", "corrnet": "corrnet_network.CorrNetModel",
          "vac": "vac_network.VACModel"}
CLASSES = {"stfnet": SLRModel, "corrnet": CorrNetModel, "vac": VACModel}
# Each model's published loss terms (config/baseline.yaml, config/corrnet.yaml, config/vac.yaml).
LOSSES = {name: yaml.safe_load((REPO / "config" / f"{file}.yaml").read_text())["loss_weights"]
          for name, file in (("stfnet", "baseline"), ("corrnet", "corrnet"), ("vac", "vac"))}
# The demo's scale for all three (config/demo.yaml's model_args, less STF-Net's own branch).
DEMO_ARGS = {"c2d_type": "resnet18", "conv_type": 1, "base_width": 8, "hidden_size": 256,
             "weight_norm": False, "channels_last": False, "pretrained": "none"}
# Published sizes, as their configs build them (1296 classes: PHOENIX-2014).
PUBLISHED = {"stfnet": {"c2d_type": "resnet34"},
             "corrnet": {"c2d_type": "resnet18"},
             "vac": {"c2d_type": "resnet18", "weight_norm": False, "share_classifier": False}}
# The papers' own PHOENIX-2014 WERs (dev / test), cited, not measured here.
PUBLISHED_WER = {"stfnet": "17.5 / 17.7 (ResNet34; github.com/zhanglong908/STFNet README)",
                 "corrnet": "18.8 / 19.4 (CVPR 2023; github.com/hulianyuyy/CorrNet README)",
                 "vac": "21.2 / 22.3 (ICCV 2021; github.com/VIPL-SLP/VAC_CSLR README)"}


def cpu_model() -> str:
    """The CPU's model name (lscpu)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Model name")), platform.processor())


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def parameters(model: torch.nn.Module) -> int:
    """Trainable numbers (a shared classifier counted once)."""
    return sum(p.numel() for p in model.parameters())


def train_config(name: str, data: Path, work: Path, seed: int, epochs: int) -> dict:
    """config/demo.yaml with `name`'s model and loss terms, `epochs` long, its dev checks kept."""
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    args = dict(DEMO_ARGS)
    if name == "stfnet":
        args.update(aux_dim=cfg["model_args"]["aux_dim"])
    else:
        args.update(share_classifier=True)  # as the demo's STF-Net
    cfg.update(model=FAMILY[name], model_args=args, loss_weights=LOSSES[name], work_dir=str(work),
               random_seed=seed, num_epoch=epochs, save_interval=100,
               eval_interval=min(cfg["eval_interval"], epochs),
               progress_bar=False, tensorboard=False,
               optimizer_args={**cfg["optimizer_args"],
                               "step": [round(epochs * s / cfg["num_epoch"]) for s in
                                        cfg["optimizer_args"]["step"]]})
    cfg["dataset_info"] = {**cfg["dataset_info"], "dataset_root": str(data / "phoenix2014"),
                           "dict_path": str(data / "preprocess" / "gloss_dict.npy")}
    return cfg


def train(args: argparse.Namespace) -> None:
    """Train `args.model` once per seed; append one JSON line per run to `args.out`."""
    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = train_config(args.model, args.data.resolve(), Path(tmp) / "work", seed, args.epochs)
            path = Path(tmp) / "cfg.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            load = load_average()
            summary = main_module.main(["--config", str(path)])
            model = CLASSES[args.model](32, **{k: v for k, v in cfg["model_args"].items()})
        row = {"kind": "train", "model": args.model, "seed": seed, "epochs": args.epochs,
               "dev_wer": summary["best_dev_wer"], "test_wer": summary.get("test_wer"),
               "steps": summary["global_step"], "train_time_s": summary["train_time_s"],
               "demo_params": parameters(model), "cpu": cpu_model(), "load_before": load,
               "load_after": load_average(), "threads": args.threads,
               "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def timing(args: argparse.Namespace) -> None:
    """Median training-step and inference times of the published-size networks, side by side."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {name: CLASSES[name](1296, conv_type=2, loss_weights=LOSSES[name], pretrained="none",
                                  **PUBLISHED[name]) for name in FAMILY}
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}
    video = torch.randn(1, args.frames, 3, args.size, args.size)
    lengths = torch.tensor([args.frames])
    labels, label_lengths = torch.arange(1, 6), torch.tensor([5])

    def step(name: str) -> float:
        model = models[name].train()
        start = time.perf_counter()
        loss = total_loss(model.loss_terms(model(video, lengths), labels, label_lengths))
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()
        return time.perf_counter() - start

    def infer(name: str) -> float:
        model = models[name].eval()
        start = time.perf_counter()
        with torch.no_grad():
            model(video, lengths)
        return time.perf_counter() - start

    order = list(FAMILY)
    for name in order:  # warm-up
        step(name), infer(name)
    times: dict[str, dict[str, list[float]]] = {n: {"step": [], "infer": []} for n in order}
    load = load_average()
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:
            times[name]["step"].append(step(name))
            times[name]["infer"].append(infer(name))
    for name in order:
        row = {"kind": "timing", "model": name, "params": parameters(models[name]),
               "step_s": statistics.median(times[name]["step"]),
               "infer_s": statistics.median(times[name]["infer"]),
               "frames": args.frames, "size": args.size, "rounds": args.rounds,
               "threads": args.threads, "cpu": cpu_model(), "load_before": load,
               "load_after": load_average(), "date": time.strftime("%Y-%m-%d")}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def report(args: argparse.Namespace) -> None:
    """The markdown table of a results file."""
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    runs = {n: [r for r in rows if r["kind"] == "train" and r["model"] == n] for n in FAMILY}
    clock = {r["model"]: r for r in rows if r["kind"] == "timing"}
    print("| model | dev WER % (seeds) | test WER % (seeds) | parameters, demo scale | "
          "parameters, published | training step s (x STF-Net) | inference s (x STF-Net) | "
          "published PHOENIX-2014 WER dev / test |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = clock.get("stfnet")
    for name in FAMILY:
        dev = ", ".join(f"{r['dev_wer']:.1f}" for r in runs[name]) or "not run"
        test = ", ".join(f"{r['test_wer']:.1f}" for r in runs[name]) or "not run"
        if runs[name]:
            dev = f"{statistics.mean(r['dev_wer'] for r in runs[name]):.1f} ({dev})"
            test = f"{statistics.mean(r['test_wer'] for r in runs[name]):.1f} ({test})"
        demo = f"{runs[name][0]['demo_params']:,}" if runs[name] else "-"
        t = clock.get(name)
        published = f"{t['params']:,}" if t else "-"
        step = f"{t['step_s']:.2f} ({t['step_s'] / base['step_s']:.2f}x)" if t and base else "-"
        infer = f"{t['infer_s']:.2f} ({t['infer_s'] / base['infer_s']:.2f}x)" if t and base else "-"
        print(f"| {name} | {dev} | {test} | {demo} | {published} | {step} | {infer} | "
              f"{PUBLISHED_WER[name]} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--data", type=Path, required=True, help="make demo-data's folder (demo_data)")
    p.add_argument("--model", choices=sorted(FAMILY), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=train)
    p = sub.add_parser("timing")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=timing)
    p = sub.add_parser("report")
    p.add_argument("results", type=Path)
    p.set_defaults(run=report)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
