"""Command-line options shared by test_one_video.py, generate_cam.py, app.py and export.py."""
from __future__ import annotations

import argparse
import sys

from dataset.registry import DATASETS, language_choices
from inference.loaded_model import LoadedModel
from inference.loading import MAX_PARAM_GIB, load_model
from dataset.video_files import frame_rate_arg
from inference.video import VideoClip, check_source, load_frames
from decoding.config import add_decode_arguments, decode_overrides
from utils.device import select_device


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model_path, device, vocabulary, decoding (--decode-mode, --beam-width, --lm-path, ...)
    and architecture-config options."""
    parser.add_argument("--model_path", "--model-path", dest="model_path", required=True,
                        help="checkpoint (.pt) from main.py or a published one, or an exported .onnx")
    parser.add_argument("--device", default="auto",
                        help="'cpu', a GPU index such as 0, or 'auto' (default: GPU 0 if present)")
    parser.add_argument("--language", default=None,
                        choices=language_choices(),
                        help="picks preprocess/<dataset>/gloss_dict.npy when the checkpoint has "
                             "no vocabulary (default: the dataset of the model's config; "
                             "config/baseline.yaml's for weights only): "
                             + ", ".join(f"{spec.language_names[0]} = {spec.name}" for spec in DATASETS.values()))
    parser.add_argument("--unsafe-load", "--unsafe_load", dest="unsafe_load", action="store_true",
                        help="load a checkpoint that needs arbitrary code to unpickle "
                             "(torch.load weights_only=False); only for a source you trust")
    parser.add_argument("--dict_path", "--dict-path", dest="dict_path", default=None,
                        help="gloss_dict.npy; one other than the checkpoint's own vocabulary is "
                             "refused unless --other_vocabulary")
    parser.add_argument("--other_vocabulary", "--other-vocabulary", action="store_true",
                        help="use --dict_path even where it differs from the checkpoint's vocabulary")
    add_decode_arguments(parser)  # default: the decode section the checkpoint was trained with
    parser.add_argument("--config", default=None,
                        help="YAML config that describes a weights-only (published) checkpoint "
                             "(default config/baseline.yaml; config/phoenix2014-T.yaml for that "
                             "model); a checkpoint of main.py carries its own")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model_args.c2d_type=resnet18 "
                             "--set feeder_args.input_size=112")
    parser.add_argument("--max-param-gib", "--max_param_gib", type=float, default=MAX_PARAM_GIB,
                        help=f"refuse a model whose parameters would take more GiB (default "
                             f"{MAX_PARAM_GIB:g}: a larger size in a file is taken as a typo)")


def add_video_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--video_path, --max_frames_num and --fps."""
    parser.add_argument("--video_path", "--video-path", dest="video_path", required=required,
                        help="video file (.mp4 .avi .mov .mkv .webm) or folder of frame images")
    parser.add_argument("--max_frames_num", "--max-frames-num", dest="max_frames_num", type=int, default=360,
                        help="frames sampled uniformly at most")
    parser.add_argument("--fps", type=frame_rate_arg, default=None,
                        help="resample a video file to this many frames per second (by its timestamps) "
                             "before recognising: the rate the model was trained at (PHOENIX and CSL-Daily "
                             "25; a table dataset: its preprocessing --fps). Default: the file's own frames")


def load_model_from_args(args: argparse.Namespace) -> LoadedModel:
    """The model named by the options of add_model_arguments."""
    given = {"dict_path": args.dict_path, "language": args.language, "config": args.config,
             "overrides": args.set, "decode": decode_overrides(args),
             "unsafe_load": args.unsafe_load, "other_vocabulary": args.other_vocabulary,
             "max_param_gib": None if args.max_param_gib == MAX_PARAM_GIB else args.max_param_gib,
             "log": lambda message: print(message, file=sys.stderr)}  # e.g. "carries no checksum"
    return load_model(args.model_path, select_device(args.device),
                      **{k: v for k, v in given.items() if v not in (None, False, [], {})})


def load_model_and_video(args: argparse.Namespace) -> tuple[LoadedModel, VideoClip]:
    """The model and the video (options of add_model_arguments / add_video_arguments)."""
    check_source(args.video_path)  # a typo in the path fails before the model loads
    loaded = load_model_from_args(args)
    clip = load_frames(args.video_path, max_frames=args.max_frames_num, size=loaded.frame_size,
                       fps=args.fps)
    return loaded, clip

