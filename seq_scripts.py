"""The training epoch, the evaluation pass (hypotheses + WER) and frame-feature extraction."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dataset.collate import padding_counts
from dataset.registry import DatasetSpec
from dataset.transforms import model_input
from decoding.decoder import Decoder, SplitDecoder
from decoding.split_logits import class_glosses, save_split_logits
from modules.criterions import total_loss
from modules.criterions import unalignable
from training.state import TrainState
from training.workdir import claim
from utils.compile import mark_time_dynamic
from utils.device import autocast, to_device
from utils.distributed import DistEnv, all_gather_objects, any_true, broadcast_module_state
from utils.errors import MissingFileError
from utils.optimizer import current_lr
from utils.record import progress

if TYPE_CHECKING:
    from training.run import Run


@dataclass
class EpochResult:
    """What one (possibly partial) training epoch produced."""

    mean_loss: float = math.nan    # over the whole epoch, also the part before a resume
    terms: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    skipped: int = 0
    videos_per_s: float = 0.0
    padded_fraction: float = 0.0   # of the batches' frames (dataset.collate.padding_counts)
    stopped: bool = False          # max_steps reached: the caller stops training


def fileid_of(info: Any) -> str:
    """The video id in a feeder's info item ('fileid|...' text or a dict with 'fileid')."""
    if isinstance(info, Mapping):
        return str(info.get("fileid", info.get("name", "")))
    return str(info).split("|")[0]


def unpack_batch(batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """(video, video_length, labels, label_length, info) from a collated feeder batch."""
    if len(batch) < 5:
        raise ValueError(f"a batch must be (video, video_length, labels, label_length, info); "
                         f"got {len(batch)} items")
    return batch[0], batch[1], batch[2], batch[3], list(batch[-1])


def nonfinite_report(info: list, video_len: torch.Tensor, label_len: torch.Tensor,
                     feat_len: torch.Tensor | None, loss: torch.Tensor) -> str:
    """A message naming the videos of a skipped batch and why CTC may have failed on them."""
    ids = [fileid_of(i) for i in info]
    parts = [f"loss is {loss.item()} for videos {ids}",
             f"frames {video_len.tolist()}, glosses {label_len.tolist()}"]
    if feat_len is not None:
        feat = feat_len.detach().cpu().tolist()
        short = [vid for vid, f, g in zip(ids, feat, label_len.tolist()) if f < g]
        parts.append(f"length after temporal pooling {feat}")
        if short:
            parts.append(f"CTC cannot align {short}: the video is shorter than its gloss sequence "
                         f"after temporal pooling (check frame_interval / the video or drop it)")
    parts.append("CTC cannot align a video shorter than its gloss sequence after pooling; "
                 "a learning rate that is too high can also cause it")
    return "; ".join(parts)


def terms_as_floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Detached scalar terms as floats, read back in one transfer (one sync on CUDA)."""
    if not terms:
        return {}
    values = torch.stack([v.detach().float().mean() for v in terms.values()]).tolist()
    return dict(zip(terms, values))


def select_samples(video: torch.Tensor, video_len: torch.Tensor, label: torch.Tensor,
                   label_len: torch.Tensor, info: list, keep: Sequence[int]) -> tuple:
    """The batch of only the samples `keep`, padded to their longest, as pad_collate makes it."""
    starts = [0] + torch.cumsum(label_len.detach().cpu(), 0).tolist()
    rows = torch.tensor(list(keep), device=video.device)
    lengths = video_len.index_select(0, rows.to(video_len.device))
    longest = int(lengths.max())
    video = video.index_select(0, rows)
    video = video[..., :longest] if video.dim() == 3 else video[:, :longest]
    label = torch.cat([label[starts[i]:starts[i + 1]] for i in keep])
    return (video, lengths, label, label_len.index_select(0, rows.to(label_len.device)),
            [info[i] for i in keep])


def drop_unalignable(batch: tuple, kernel_sizes: Sequence[str] | None, state: TrainState,
                     log: Callable[[str], None]) -> tuple:
    """Drop (and log) the videos CTC cannot align, keeping their batch-mates; all-bad batches stay."""
    video, video_len, label, label_len, info = batch
    bad = unalignable(video_len, label, label_len, kernel_sizes) if kernel_sizes else []
    if not bad or len(bad) == len(info):
        return batch  # nothing to drop, or nothing left: the non-finite loss skips the batch
    for i, steps, need in bad:
        fileid = fileid_of(info[i])
        log(f"warning: dropped video {fileid} from batch {state.batch_in_epoch} of epoch "
            f"{state.epoch} (its batch-mates train): CTC cannot align it, its "
            f"{int(video_len[i])} frames leave {steps} steps after temporal pooling for "
            f"{int(label_len[i])} glosses, which need {need}; check the video, or lower "
            f"feeder_args.frame_interval")
        if fileid not in state.dropped_videos:
            state.dropped_videos.append(fileid)
    keep = [i for i in range(len(info)) if i not in {b[0] for b in bad}]
    return select_samples(video, video_len, label, label_len, info, keep)


@dataclass
class StepResult:
    """One batch's outcome: its loss and terms, or the report of why it was skipped."""

    videos: int                                           # samples of the batch on this process
    loss: float | None = None                             # None: skipped for a non-finite loss
    terms: dict[str, float] = field(default_factory=dict)
    skip_report: str = ""                                 # names the skipped batch's videos


def prepare_batch(run: Run, batch: Sequence[Any]) -> tuple:
    """A loader's batch on the device, normalised, without the videos CTC cannot align."""
    video, video_len, label, label_len, info = unpack_batch(batch)
    video, video_len, label, label_len = to_device((video, video_len, label, label_len), run.opts.device)
    video = model_input(video)  # uint8 batches are normalised here, after the transfer
    return drop_unalignable((video, video_len, label, label_len, info),
                            getattr(run.core, "kernel_sizes", None), run.state, run.log)


def train_step(run: Run, batch: tuple, sync: bool = True) -> StepResult:
    """Forward, loss, the non-finite skip and backward of one prepared batch (prepare_batch).

    Gradients accumulate in the parameters; the loop steps the optimizer. Every process takes
    the same branch: a non-finite loss anywhere skips the batch everywhere. Without `sync`
    (inside an accumulation window) DDP defers its gradient all-reduce.
    """
    video, video_len, label, label_len, info = batch
    model, core, opts = run.model, run.core, run.opts
    if opts.compiled:
        mark_time_dynamic(video)  # a new video length reuses the compiled graph
    no_sync = getattr(model, "no_sync", None)
    with no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext():
        with autocast(opts.device, opts.amp_dtype):
            ret = model(video, video_len, label=label, label_lgt=label_len)
            terms = core.loss_terms(ret, label, label_len)
            loss = total_loss(terms)
        if any_true(not bool(torch.isfinite(loss.detach()).all()), run.env, opts.device):
            report = nonfinite_report(info, video_len, label_len, ret.get("feat_len"), loss)
            if not opts.skip_nonfinite:
                state = run.state
                raise FloatingPointError(f"epoch {state.epoch} batch {state.batch_in_epoch}: {report}")
            return StepResult(videos=int(video.shape[0]), skip_report=report)
        run.scaler.scale(loss / opts.grad_accum).backward()
    return StepResult(videos=int(video.shape[0]), loss=float(loss.detach()), terms=terms_as_floats(terms))


def sync_skipped_window(run: Run) -> None:
    """After a skipped batch closes a window whose other batches trained under no_sync: their
    gradients still have to be averaged, so a zero loss through every parameter runs DDP's all-reduce."""
    if run.env.distributed and getattr(run.model, "no_sync", None) is not None:
        (sum(p.sum() for p in run.core.parameters() if p.requires_grad) * 0.0).backward()


def optimizer_step(run: Run) -> None:
    """Clip (when asked) and apply the accumulated gradients."""
    if run.opts.clip_grad_norm > 0:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_([p for p in run.core.parameters() if p.requires_grad],
                                 run.opts.clip_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.state.global_step += 1


def train_epoch(run: Run, loader: Iterable, on_checkpoint: Callable[[], None] | None = None,
                total_batches: int | None = None) -> EpochResult:
    """Train for the rest of `run.state.epoch` (from `state.batch_in_epoch`); updates the state in
    place. Each batch is one train_step; this loop accumulates, steps the optimizer and logs."""
    state, opts, env, log, optimizer = run.state, run.opts, run.env, run.log, run.optimizer
    run.model.train()
    total = total_batches if total_batches is not None else state.batch_in_epoch + len(loader)
    result = EpochResult()
    losses: list[float] = []
    term_sums: dict[str, float] = {}
    window_good = 0
    videos = 0
    padding = [0, 0]  # padded frames, frames
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    bar = progress(total=total, initial=state.batch_in_epoch, desc=f"epoch {state.epoch}",
                   disable=not (opts.progress_bar and env.is_main), dynamic_ncols=True, leave=False)
    for batch in loader:
        padding = [sum(pair) for pair in zip(padding, padding_counts(batch[0], batch[1]))]
        state.batch_in_epoch += 1
        state.batches += 1
        sync_step = state.batch_in_epoch % opts.grad_accum == 0 or state.batch_in_epoch >= total
        prepared = prepare_batch(run, batch)
        step = train_step(run, prepared, sync=sync_step)
        if step.loss is None:
            state.skipped_batches += 1
            state.epoch_skipped += 1
            state.skipped_videos += [fileid_of(i) for i in prepared[-1]]
            result.skipped += 1
            log(f"skipped batch {state.batch_in_epoch} of epoch {state.epoch} "
                f"(on some process): {step.skip_report}")
            if sync_step and window_good:
                sync_skipped_window(run)
        else:
            window_good += 1
            losses.append(step.loss)
            state.epoch_loss_sum += step.loss
            state.epoch_loss_count += 1
            for k, v in step.terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + v
        videos += step.videos * env.world_size
        if sync_step:
            if window_good:
                optimizer_step(run)
            optimizer.zero_grad(set_to_none=True)
            window_good = 0
        elapsed = max(time.perf_counter() - start, 1e-9)
        bar.update(1)
        if losses:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{current_lr(optimizer):.2e}",
                            vid_s=f"{videos / elapsed:.1f}", refresh=False)
        if opts.log_interval and state.batch_in_epoch % opts.log_interval == 0 and losses:
            log(f"epoch {state.epoch} batch {state.batch_in_epoch}/{total} loss {losses[-1]:.4f} "
                f"lr {current_lr(optimizer):.2e} {videos / elapsed:.1f} videos/s")
        if sync_step:
            if opts.max_steps and state.global_step >= opts.max_steps:
                result.stopped = True  # the caller saves the (mid-epoch) checkpoint
                break
            if (on_checkpoint is not None and opts.save_steps and state.batch_in_epoch < total
                    and state.global_step % opts.save_steps == 0):
                on_checkpoint()
    bar.close()
    result.batches = len(losses) + result.skipped
    result.mean_loss = (state.epoch_loss_sum / state.epoch_loss_count if state.epoch_loss_count
                        else math.nan)
    result.terms = {k: v / max(len(losses), 1) for k, v in term_sums.items()}
    result.videos_per_s = videos / max(time.perf_counter() - start, 1e-9)
    result.padded_fraction = padding[0] / max(padding[1], 1)
    return result


@torch.no_grad()
def seq_eval(loader: torch.utils.data.DataLoader, core: nn.Module, device: torch.device,
             amp_dtype: torch.dtype | None, env: DistEnv, progress_bar: bool = True,
             desc: str = "eval", *, decoder: Decoder, chunk_size: int = 1024,
             logits_out: dict | None = None) -> dict[str, dict[str, list[str]]] | None:
    """Decode a split; rank 0 gets {'lstm': {fileid: glosses}, 'conv': {...}} in dataset order.

    The bare model runs (not the DDP wrapper): evaluation needs no collectives, so shards of
    different sizes are fine; the hypotheses are gathered once at the end. The logits stay on
    the device and `decoder` decodes them `chunk_size` videos per call; `logits_out` (rank 0)
    receives ids and BiLSTM logits.
    """
    core.eval()
    indices = list(loader.sampler) if loader.sampler is not None else []
    keys: list[tuple[int, str]] = []
    split = SplitDecoder(decoder, chunk_size, keep_logits=logits_out is not None,
                         outputs=("lstm", "conv"))
    for batch in progress(loader, desc=desc, disable=not (progress_bar and env.is_main), leave=False):
        video, video_len, label, label_len, info = unpack_batch(batch)
        video, video_len, label, label_len = to_device((video, video_len, label, label_len), device)
        video = model_input(video)
        with autocast(device, amp_dtype):
            ret = core(video, video_len, label=label, label_lgt=label_len)
        split.add(ret["sequence_logits"], ret["feat_len"], output="lstm")
        split.add(ret["conv_logits"], ret["feat_len"], output="conv")
        for item in info:
            keys.append((indices[len(keys)] if len(keys) < len(indices) else len(keys), fileid_of(item)))
    decoded = split.finish()
    lstm_sents, conv_sents = decoded["lstm"], decoded["conv"]
    kept = split.kept if logits_out is not None else [None] * len(keys)
    rows = [(index, fileid, [g for g, _ in lstm], [g for g, _ in conv], logits)
            for (index, fileid), lstm, conv, logits in zip(keys, lstm_sents, conv_sents, kept)]
    gathered = all_gather_objects(rows, env)
    if not env.is_main:
        return None
    merged = sorted((r for part in gathered for r in part), key=lambda r: r[0])
    if logits_out is not None:
        logits_out.update(ids=[r[1] for r in merged], logits=[r[4] for r in merged])
    return {"lstm": {r[1]: r[2] for r in merged}, "conv": {r[1]: r[3] for r in merged}}


def score_hypotheses(hyps: Mapping[str, Mapping[str, Sequence[str]]], stm_path: str | Path,
                     out_dir: str | Path, split: str, spec: DatasetSpec, tool: str) -> dict[str, dict]:
    """Write the CTMs of both outputs and score them; {'lstm': score dict, 'conv': score dict}."""
    from evaluation.ctm import write_ctm
    from evaluation.wer import score_files

    stm_path = Path(stm_path)
    if not stm_path.is_file():
        raise MissingFileError(f"ground truth {stm_path} not found: run the preprocessing "
                               f"(it writes <dataset>-groundtruth-<split>.stm) or set "
                               f"dataset_info.evaluation_dir")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for name, suffix in (("lstm", ""), ("conv", "-conv")):
        ctm = out_dir / f"output-hypothesis-{split}{suffix}.ctm"
        write_ctm(ctm, hyps[name])
        scores[name] = score_files(stm_path, ctm, spec, tool=tool,
                                   report_dir=out_dir / f"report-{split}{suffix}")
    return scores


def evaluate(run: Run, split: str, tag: str) -> dict | None:
    """Decode `split` with `run.core`, write CTMs under <work_dir>/<tag>/, score; rank 0 returns
    {'lstm': scores, 'conv': scores} (the BiLSTM's and the temporal stack's)."""
    cfg, decoder, log = run.cfg, run.decoder, run.log
    decode = decoder.cfg
    loader = run.data.loader(run.data.dataset(split, train=False), train=False)
    broadcast_module_state(run.core, run.env)  # every process scores the weights rank 0 saves
    logits = {} if cfg["phase"] == "test" and decode.save_logits else None
    start, decode_before = time.perf_counter(), decoder.seconds
    hyps = seq_eval(loader, run.core, run.opts.device, run.opts.amp_dtype, run.env,
                    progress_bar=bool(cfg["progress_bar"]), desc=f"{split} {tag}",
                    decoder=decoder, chunk_size=decode.chunk_size, logits_out=logits)
    if hyps is None:
        return None
    claim(run.work_dir, tag)
    log(f"{split} ({tag}): evaluation {time.perf_counter() - start:.2f} s, of which decoding "
        f"{decoder.seconds - decode_before:.2f} s ({decode.mode}"
        f"{', LM ' + str(decode.lm_path) if decode.lm_path else ''}"
        f"{', pruned' if decoder.pruned else ''})")
    if logits is not None:
        path = run.work_dir / tag / f"{split}-logits.pt"
        save_split_logits(path, logits["ids"], logits["logits"],
                          class_glosses(run.gloss_dict, decoder.num_classes))
        log(f"{split} logits saved to {path} (LM tuning: python tune_lm.py)")
    scores = score_hypotheses(hyps, run.data.stm_path(split), run.work_dir / tag, split, run.data.spec,
                              cfg["evaluate_tool"])
    log(f"{split} ({tag}): WER {scores['lstm']['wer']:.2f}% (BiLSTM), "
        f"{scores['conv']['wer']:.2f}% (temporal stack); "
        f"sub {scores['lstm'].get('sub')}, del {scores['lstm'].get('del')}, "
        f"ins {scores['lstm'].get('ins')} of {scores['lstm'].get('words')} words")
    return scores


@torch.no_grad()
def seq_feature_generation(run: Run, loader: torch.utils.data.DataLoader, out_dir: str | Path) -> int:
    """Save `<out_dir>/<fileid>_features.npy` ({'features': (T, D) float32, 'label': [int]}) per video."""
    core, device, amp_dtype, env = run.core, run.opts.device, run.opts.amp_dtype, run.env
    progress_bar = bool(run.opts.progress_bar)
    core.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for batch in progress(loader, desc=f"features {out_dir.name}",
                      disable=not (progress_bar and env.is_main), leave=False):
        video, video_len, label, label_len, info = unpack_batch(batch)
        with autocast(device, amp_dtype):
            ret = core(model_input(to_device(video, device)), to_device(video_len, device))
        feats = ret["framewise_features"].float().cpu()
        start = 0
        for b, item in enumerate(info):
            end = start + int(label_len[b])
            length = int(video_len[b])
            payload = {"features": feats[b][:, :length].T.contiguous().numpy().astype(np.float32),
                       "label": [int(x) for x in label[start:end]]}
            np.save(out_dir / f"{fileid_of(item)}_features.npy", payload)
            start = end
            written += 1
    return written
