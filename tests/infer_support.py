"""A tiny STF-Net trained in seconds on one synthetic video, saved as this project's checkpoint
and as a published (weights-only) one: the shared fixture of the single-video tools' tests."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from dataset.registry import dataset_spec
from dataset.synthetic import plan_videos, render_video, vocabulary
from decoding.config import DecodeConfig
from decoding.decoder import Decoder
from inference.recognize import prepare_input
from inference.video import load_frames, write_video
from modules.criterions import total_loss
from slr_network import SLRModel
from utils.checkpoint import save_checkpoint

TINY_ARGS = {"c2d_type": "resnet18", "conv_type": 2, "hidden_size": 32,
             "weight_norm": True, "share_classifier": True, "hsa_attention": True,
             "base_width": 8, "aux_dim": 16}
TINY_CLI = ["--set", "model_args.c2d_type=resnet18", "--set", "model_args.hidden_size=32",
            "--set", "model_args.base_width=8", "--set", "model_args.aux_dim=16",
            "--set", "feeder_args.image_scale=0.25"]
CONFIG = {"feeder_args": {"input_size": 224, "image_scale": 0.25}}  # 56x56 network input: fast


def make_assets(root: Path) -> dict:
    """Synthetic video (folder + 2 mp4s), gloss dict and checkpoints of a tiny trained model."""
    video = plan_videos(dataset_spec("phoenix2014"), "tiny", 0)[0]
    bgr = render_video(video, 210, 260, (5, 6))  # raw PHOENIX size: the reader resizes to 256x256
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(bgr):  # unpadded numbers: natural order matters (frame10 after frame9)
        cv2.imwrite(str(folder / f"frame{i}.png"), frame)
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr])
    write_video(root / "lossless.mp4", rgb, lossless=True)
    write_video(root / "lossy.mp4", rgb, lossless=False)

    gloss_dict = {g: [i + 1, 1] for i, g in enumerate(sorted(vocabulary(dataset_spec("phoenix2014"))))}
    torch.manual_seed(0)
    model = SLRModel(len(gloss_dict) + 1, loss_weights={"SeqCTC": 1.0, "ConvCTC": 1.0}, **TINY_ARGS)
    greedy = Decoder(DecodeConfig.recipe().updated({"mode": "max"}), gloss_dict)
    prepared = prepare_input(load_frames(folder).frames, model.kernel_sizes, 224, 0.25)
    label = torch.tensor([gloss_dict[g][0] for g in video.glosses])
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-3)
    sentence: list[str] = []
    for step in range(1, 201):  # stops at about 60-100 steps: right sentence with a margin
        model.train()
        loss = total_loss(model.loss_terms(model(prepared.video, prepared.length), label,
                                           torch.tensor([len(label)])))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                out = model(prepared.video, prepared.length)
            sentence = [g for g, _ in greedy.decode(out["sequence_logits"], out["feat_len"],
                                                    batch_first=False)[0]]
            if sentence == list(video.glosses) and float(loss.detach()) < 3.0:
                break
    assert sentence == list(video.glosses), f"tiny model did not learn the sentence: {sentence}"

    state = model.state_dict()
    ours = root / "ours.pt"
    save_checkpoint(ours, {"model_state_dict": state, "model_args": dict(TINY_ARGS), "config": CONFIG,
                           "gloss_dict": gloss_dict, "epoch": 1})
    published = root / "published.pt"  # weights only, with DataParallel prefixes as released files have
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, published)
    dict_path = root / "gloss_dict.npy"
    np.save(dict_path, gloss_dict)
    small_dict = root / "small_dict.npy"
    np.save(small_dict, {g: v for g, v in list(gloss_dict.items())[:5]})
    return {"root": root, "folder": folder, "lossless": root / "lossless.mp4", "lossy": root / "lossy.mp4",
            "ours": ours, "published": published, "dict": dict_path, "small_dict": small_dict,
            "sentence": list(video.glosses), "num_frames": len(bgr)}


def runner_listing(repo_root: Path) -> str:
    """The ONNX runner as docs/onnx_runner.md lists it (its python block), the README links it."""
    text = (repo_root / "docs" / "onnx_runner.md").read_text(encoding="utf-8")
    return text.split("```python\n")[1].split("```")[0]
