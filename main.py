"""STFNet entry point: `python main.py --config config/<dataset>.yaml [--phase train|test|features]`.

The recipe, top to bottom: `build_run` (training/run.py) checks and builds everything the phase
needs (devices, model, optimizer, scheduler, scaler, data, train state); `train` below is the
epoch loop: `train_epoch` and `evaluate` (seq_scripts.py), checkpoints (training/checkpoints.py).

Multi-process: `torchrun --nproc_per_node N main.py --config ... --device 0,1,...` (gloo on CPU).
"""
from __future__ import annotations

import utils.installed  # noqa: F401  (first: without the requirements, one line on how to install)
import argparse
import json
import math
import sys
import time
import warnings
from typing import Any, Mapping

from seq_scripts import evaluate, seq_feature_generation, train_epoch
from training import checkpoints
from training.checkpoints import BEST, LAST, epoch_name
from training.run import Run, build_run
from decoding.config import add_decode_arguments
from training.workdir import claim, discard_previous_run
from utils.checkpoint import load_checkpoint, model_state_from_checkpoint
from utils.config import build_parser, resolve_config
from utils.distributed import broadcast_object, shutdown
from utils.errors import UserError, run_cli
from utils.optimizer import current_lr
from utils.random_state import restore_rng_state


def train(run: Run) -> dict:
    """Epochs of training, dev evaluation, checkpoints; then the best model on the test set."""
    cfg, data, log = run.cfg, run.data, run.log
    rng = run.resume_rng  # build_run resumed (and checked) the checkpoint; its RNG state comes last
    state = run.state
    train_set = data.dataset("train", train=True)
    evaluate_dev = "dev" in cfg["eval_splits"]
    batch_size = int(cfg["batch_size"])
    total_batches = len(train_set) // run.env.world_size // batch_size  # >= 1: startup.check_batches
    if rng is not None:
        restore_rng_state(rng)  # last: nothing may draw between this and training
    first = state.epoch + 1 if state.epoch_complete else state.epoch
    stopped, start_time = False, time.time()
    for epoch in range(first, int(cfg["num_epoch"])):
        if state.epoch != epoch or state.epoch_complete:
            state.start_epoch(epoch)
        loader = data.loader(train_set, True, epoch, state.batch_in_epoch)
        lr = current_lr(run.optimizer)
        epoch_start = time.time()
        result = train_epoch(run, loader, on_checkpoint=lambda: checkpoints.save(run, LAST),
                             total_batches=total_batches)
        check_progress(run, epoch)
        if result.stopped:
            checkpoints.save(run, LAST)
            log(f"stopped after {state.global_step} steps (max_steps); "
                f"rerun into {run.work_dir} to continue")
            stopped = True
            break
        run.scheduler.step()
        state.epoch_complete = True
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "loss": result.mean_loss,
                               **{f"loss_{k}": v for k, v in result.terms.items()},
                               "skipped_batches": state.epoch_skipped,
                               "videos_per_s": result.videos_per_s,
                               "padded_fraction": result.padded_fraction,
                               "epoch_time_s": time.time() - epoch_start}
        terms = ", ".join(f"{k} {v:.4f}" for k, v in result.terms.items())
        log(f"epoch {epoch}: mean loss {result.mean_loss:.4f} ({terms}), {state.epoch_skipped} skipped "
            f"batches, {result.videos_per_s:.1f} videos/s, {result.padded_fraction:.1%} padded frames, "
            f"{time.time() - epoch_start:.0f}s")
        names = [LAST]
        last_epoch = epoch == int(cfg["num_epoch"]) - 1
        if evaluate_dev and ((epoch + 1) % int(cfg["eval_interval"]) == 0 or last_epoch):
            scores = evaluate(run, "dev", f"epoch_{epoch}")
            if scores is not None:
                row.update(dev_wer=scores["lstm"]["wer"], dev_conv_wer=scores["conv"]["wer"])
            wer = broadcast_object(scores["lstm"]["wer"] if scores else None, run.env)
            if wer is not None and wer < state.best_dev_wer:
                state.best_dev_wer, state.best_epoch = wer, epoch
                names.append(BEST)
            log(f"epoch {epoch}: dev WER {wer:.2f}% (best {state.best_dev_wer:.2f}% "
                f"at epoch {state.best_epoch})")
        if (epoch + 1) % int(cfg["save_interval"]) == 0:
            names.append(epoch_name(epoch))
        checkpoints.save(run, *names)
        if run.metrics is not None:
            run.metrics.append(row)
            run.metrics.plot()
    summary: dict[str, Any] = {"global_step": state.global_step, "stopped": stopped,
                               "best_dev_wer": state.best_dev_wer,
                               "best_epoch": state.best_epoch,
                               "skipped_batches": state.skipped_batches,
                               "train_time_s": time.time() - start_time}
    dropped = state.dropped_videos
    summary["dropped_videos"] = list(dropped)
    log(f"training: {state.global_step} steps, {state.skipped_batches} skipped "
        f"batches, {len(dropped)} videos dropped{' ' + str(dropped) if dropped else ''}, "
        f"{summary['train_time_s']:.0f}s")
    if not stopped and cfg["test_best"] and "test" in cfg["eval_splits"]:
        best = run.work_dir / BEST
        if best.is_file():
            run.core.load_state_dict(model_state_from_checkpoint(load_checkpoint(best)))
            log(f"final test of {best} (dev WER {state.best_dev_wer:.2f}%)")
        scores = evaluate(run, "test", "test_best")
        if scores is not None:
            summary["test_wer"] = scores["lstm"]["wer"]
            summary["test_conv_wer"] = scores["conv"]["wer"]
    write_summary(run, "train_results.json", summary)
    return summary


def check_progress(run: Run, epoch: int) -> None:
    """End the run (non-zero exit, before any dev evaluation or best_model.pt) when it is not
    really training: no optimizer step, or more than max_skipped_share of the batches skipped."""
    state, limit = run.state, float(run.cfg["max_skipped_share"])
    share = state.skipped_batches / max(state.batches, 1)
    if state.global_step > 0 and share <= limit:
        return
    reason = ("it took no optimizer step" if state.global_step == 0 else
              f"{share:.0%} of its batches were skipped, more than max_skipped_share={limit:g}")
    videos = sorted(set(state.skipped_videos))
    listing = ", ".join(videos[:10]) + (f" ... (+{len(videos) - 10})" if len(videos) > 10 else "")
    message = (f"training failed in epoch {epoch}: {reason} ({state.skipped_batches} of "
               f"{state.batches} batches skipped for a non-finite loss; their videos: "
               f"{listing or 'none on this process'}). log.txt says why for each batch; no "
               f"best_model.pt was written for this epoch")
    run.log(message)
    raise TrainingFailed(message)


def test(run: Run) -> dict:
    """Dev and test WER of the loaded weights, CTMs and reports under <work_dir>/eval/."""
    summary: dict[str, Any] = {}
    for split in run.cfg["eval_splits"]:
        scores = evaluate(run, split, "eval")
        if scores is not None:
            summary[f"{split}_wer"] = scores["lstm"]["wer"]
            summary[f"{split}_conv_wer"] = scores["conv"]["wer"]
    write_summary(run, "test_results.json", summary)
    return summary


def features(run: Run) -> dict:
    """Frame features of every split for the `features` feeder mode."""
    out = run.data.paths["features_dir"]
    if run.env.is_main and out.parent.resolve() == run.work_dir.resolve():
        claim(run.work_dir, out.name)  # the default <work_dir>/features
    counts = {}
    for split in run.data.spec.splits:
        loader = run.data.loader(run.data.dataset(split, train=False), train=False)
        counts[split] = seq_feature_generation(run, loader, out / split)
        run.log(f"features: {counts[split]} videos of {split} written to {out / split}")
    return counts


PHASES = {"train": train, "test": test, "features": features}


def run_phase(run: Run) -> dict:
    """Run the configured phase; returns its summary (WERs, steps)."""
    phase = run.cfg["phase"]
    run.log(f"phase {phase} on {run.opts.device} (world size {run.env.world_size}), "
            f"work dir {run.work_dir}")
    try:
        summary = PHASES[phase](run)
    finally:
        if run.metrics is not None:
            run.metrics.close()
    if run.env.is_main:
        discard_previous_run(run.book.previous_run)  # a phase that writes no checkpoint is done now
    return summary


def write_summary(run: Run, name: str, summary: Mapping[str, Any]) -> None:
    """A JSON summary of the phase in the work dir (rank 0)."""
    if run.env.is_main:
        claim(run.work_dir, name)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in summary.items()}
        (run.work_dir / name).write_text(json.dumps(clean, indent=2) + "\n")


class TrainingFailed(UserError):
    """The run ended without really training (the message names the batches' videos)."""


def parser() -> argparse.ArgumentParser:
    """main.py's options: a run's (utils.config.build_parser) and the decode section's."""
    options = build_parser()
    add_decode_arguments(options)
    return options


def main(argv: list[str] | None = None) -> dict:
    """Parse the command line and run the phase."""
    cfg, args = resolve_config(argv, parser())
    with warnings.catch_warnings():  # restores the warning hook the run diverts into log.txt
        try:
            run = build_run(cfg, overwrite=args.overwrite, unsafe_load=args.unsafe_load,
                            other_vocabulary=args.other_vocabulary, config_file=args.config,
                            max_param_gib=args.max_param_gib)
            try:
                return run_phase(run)
            finally:
                if run.lock is not None:
                    run.lock.release()
        finally:
            shutdown()


def cli(argv: list[str] | None = None) -> int:
    """main() with one `error:` line and exit status 2 for a UserError (input, config or files)."""
    return run_cli(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(cli())
