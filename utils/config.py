"""Run configuration: the published recipe (config/baseline.yaml) < YAML file(s) < command line.

Unknown keys are refused with the closest valid one; keys of earlier versions name their successor.
"""
from __future__ import annotations

import argparse
import copy
import inspect
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from utils.compile import COMPILE_MODES
from utils.errors import ConfigError, closest_key

# Nested sections whose keys are open (validated later against a constructor signature, or free).
OPEN_SECTIONS = ("model_args", "feeder_args", "loss_weights")

PHASES = ("train", "test", "features")
AMP_MODES = ("none", "fp16", "bf16")


REPO_ROOT = Path(__file__).resolve().parents[1]
# The published recipe: every key a config may set, with its default (stated nowhere else).
RECIPE = REPO_ROOT / "config" / "baseline.yaml"

# Keys of earlier versions: where they went (a user's YAML gets an error naming the new key; a
# checkpoint's saved config is moved by upgrade_saved_config) or why they went (None: dropped).
MOVED_KEYS: dict[str, str | None] = {
    "decode_args": "decode",
    "decode_mode": "decode.mode",
    "beam_width": "decode.beam_width",
    "model_args.search_mode": "decode.mode",   # later entries win: the model's were what ran
    "model_args.beam_width": "decode.beam_width",
    "random_fix": None,
    "optimizer_args.learning_ratio": None,
    "feeder_args.num_gloss": None,      # the original's feeder took and ignored these two
    "feeder_args.drop_ratio": None,
    "model_args.use_bn": None,          # the original models' TemporalConv took and ignored it
}


def default_config() -> dict:
    """The defaults every key falls back to: the published recipe, config/baseline.yaml."""
    return load_yaml(RECIPE)


def unknown_keys(base: Mapping[str, Any], override: Mapping[str, Any], path: str = "") -> list[str]:
    """Every key of `override` (at any depth) that `base` lacks, each as "'key'; did you mean ...?"."""
    found = []
    for key, value in override.items():
        full = f"{path}{key}"
        if path.rstrip(".") in OPEN_SECTIONS or not isinstance(key, str):
            continue
        if key not in base:
            found.append(f"'{full}'{closest_key(key, base)}")
        elif isinstance(base[key], dict) and isinstance(value, Mapping) and key not in OPEN_SECTIONS:
            found += unknown_keys(base[key], value, f"{full}.")
    return found


def merge_config(base: dict, override: Mapping[str, Any], source: str, path: str = "",
                 strict: bool = True) -> dict:
    """Recursively merge `override` into a copy of `base`; unknown keys raise a ConfigError
    (naming all of them at once, each with its closest valid key)."""
    if strict and not path:
        unknown = unknown_keys(base, override)
        if len(unknown) > 1:
            raise ConfigError(f"{source}: {len(unknown)} unknown keys: " + "; ".join(unknown))
    out = copy.deepcopy(base)
    for key, value in override.items():
        full = f"{path}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {full!r} is not a string")
        if strict:
            check_not_moved(full, value, source)
        if strict and key not in out and path.rstrip(".") not in OPEN_SECTIONS:
            raise ConfigError(f"{source}: unknown key '{full}'{closest_key(key, out)}")
        if isinstance(out.get(key), dict) and isinstance(value, Mapping) and key not in OPEN_SECTIONS:
            out[key] = merge_config(out[key], value, source, f"{full}.", strict)
        elif isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = {**out[key], **copy.deepcopy(dict(value))}
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_not_moved(key: str, value: Any, source: str) -> None:
    """Refuse a key of an earlier version (or one inside an open section), naming what replaced it."""
    names = [key] + ([f"{key}.{sub}" for sub in value] if isinstance(value, Mapping) else [])
    for name in names:
        if name in MOVED_KEYS:
            new = MOVED_KEYS[name]
            raise ConfigError(f"{source}: key '{name}' " + (f"moved to '{new}'" if new else
                              "was removed (nothing read it); delete it"))


def upgrade_saved_config(saved: Mapping[str, Any]) -> dict:
    """A checkpoint's saved config with the keys of earlier versions moved (MOVED_KEYS) or dropped."""
    out = copy.deepcopy(dict(saved))
    for old, new in MOVED_KEYS.items():
        *parents, leaf = old.split(".")
        section = out
        for name in parents:
            section = section.get(name) if isinstance(section.get(name), dict) else {}
        if leaf not in section:
            continue
        value = section.pop(leaf)
        if new is None:
            continue
        *new_parents, new_leaf = new.split(".")
        target = out
        for name in new_parents:
            target = target.setdefault(name, {})
        if isinstance(value, Mapping) and isinstance(target.get(new_leaf), dict):
            target[new_leaf].update(value)
        else:
            target[new_leaf] = value
    return out


def check_section_keys(section: Mapping[str, Any], names: Sequence[str], name: str) -> None:
    """A complete section `name`: every key of `names` present, no other (named with the closest)."""
    for key in section:
        if key not in names:
            raise ConfigError(f"unknown key '{name}.{key}'{closest_key(str(key), names)}")
    missing = [key for key in names if key not in section]
    if missing:
        raise ConfigError(f"the {name} section lacks {', '.join(f'{name}.{m}' for m in missing)}")


def load_yaml(path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """Read a config file; a top-level `base:` names a file (relative to this one) it extends."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass --config config/<name>.yaml)")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular 'base:' chain {[str(p) for p in seen]}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); pass a YAML config with "
                          f"--config config/<name>.yaml") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    if is_recursive(data):
        raise ConfigError(f"{path}: a value contains itself (a recursive YAML alias); write it out in full")
    base = data.pop("base", None)
    if base is None:
        return data
    parent = load_yaml(path.parent / base, seen + (path.resolve(),))
    return merge_config(parent, data, str(path), strict=False)


def parse_set_item(item: str) -> tuple[list[str], Any]:
    """Split `a.b=value` into (['a', 'b'], value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer_args.base_lr=1e-3")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if is_recursive(value):
        raise ConfigError(f"--set {item!r}: the value contains itself (a recursive YAML alias); "
                          f"write it out in full")
    return key.strip().split("."), value


def is_recursive(value: Any, inside: frozenset[int] = frozenset()) -> bool:
    """Whether a parsed YAML value contains itself (an alias `&x [*x]`): no config value can."""
    if not isinstance(value, (dict, list)):
        return False
    if id(value) in inside:
        return True
    inside = inside | {id(value)}
    children = value.values() if isinstance(value, dict) else value
    return any(is_recursive(child, inside) for child in children)


def nest(keys: Sequence[str], value: Any) -> dict:
    """{'a': {'b': value}} from ['a', 'b']."""
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of a run; every default is None so that only what was typed overrides
    (main.py adds the decode section's, decoding.config.add_decode_arguments)."""
    p = argparse.ArgumentParser(
        description="STFNet continuous sign language recognition: train, test, extract features.",
        argument_default=None)

    def add(name: str, **kw: Any) -> None:
        flags = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
        p.add_argument(*flags, **kw)

    add("config", help="YAML config file (e.g. config/phoenix2014.yaml)")
    add("work-dir", help="folder for checkpoints, logs, hypotheses; reused (resumed) if it exists")
    add("phase", choices=PHASES, help="train, test or features")
    add("device", help="'cpu', a GPU index '0', or '0,1' with torchrun; 'auto' = GPU 0 if present")
    add("dataset", help="a dataset name of dataset/registry.py, e.g. phoenix2014 or CSL-Daily")
    add("load-weights", help="initialise the model from a checkpoint (ours or published)")
    add("load-checkpoints", help="resume training from a checkpoint of this project")
    add("batch-size", type=int)
    add("test-batch-size", type=int)
    add("num-epoch", type=int)
    add("num-worker", type=int)
    add("random-seed", type=int)
    add("eval-interval", type=int, help="evaluate on dev every N epochs")
    add("save-interval", type=int, help="keep a checkpoint every N epochs")
    add("log-interval", type=int, help="log every N batches")
    add("evaluate-tool", choices=("python", "sclite"))
    add("amp", choices=AMP_MODES, help="mixed precision: fp16 (CUDA, grad scaler) or bf16")
    p.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES, default=None,
                   metavar="MODE", help="torch.compile the training forward: default (the mode "
                   "without a value), reduce-overhead, max-autotune or none (key 'compile')")
    add("grad-accum", type=int, help="accumulate gradients over N batches per optimizer step")
    add("clip-grad-norm", type=float, help="clip the gradient norm to this value (0 = off)")
    add("max-steps", type=int, help="stop after this many optimizer steps (0 = no limit)")
    p.add_argument("--sync-bn", "--sync_bn", action="store_true", default=None,
                   help="synchronise BatchNorm statistics across processes (DDP)")
    p.add_argument("--overwrite", action="store_true", default=False,
                   help="delete an existing --work-dir instead of resuming in it")
    p.add_argument("--unsafe-load", "--unsafe_load", action="store_true", default=False,
                   help="load checkpoints that need arbitrary code to unpickle (torch.load "
                        "weights_only=False); only for files from a source you trust")
    p.add_argument("--other-vocabulary", "--other_vocabulary", action="store_true", default=False,
                   help="load weights trained with another gloss dictionary of the same size "
                        "(refused by default: their classes would get other glosses' names)")
    p.add_argument("--max-param-gib", "--max_param_gib", type=float, default=8.0,
                   help="refuse a model whose parameters would take more GiB (default 8: a larger "
                        "size in a config or checkpoint is taken as a typo)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any (nested) key, e.g. --set optimizer_args.base_lr=1e-3")
    return p


def cli_overrides(args: argparse.Namespace) -> dict:
    """The config keys given on the command line (dashes become underscores; an option stored as
    `section.key`, e.g. decoding.config's, goes into its section)."""
    skip = {"config", "overwrite", "set", "unsafe_load", "other_vocabulary", "max_param_gib"}
    out: dict = {}
    for name, value in vars(args).items():
        if name in skip or value is None:
            continue
        *sections, key = name.split(".")
        target = out
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return out


def check_types(cfg: Mapping[str, Any], defaults: Mapping[str, Any], path: str = "") -> None:
    """Reject a value whose type cannot stand for its default's (e.g. a list where a number goes)."""
    for key, default in defaults.items():
        if key not in cfg or default is None or cfg[key] is None:
            continue
        value, full = cfg[key], f"{path}{key}"
        if isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"key '{full}' must be a mapping, got {value!r}")
            if key not in OPEN_SECTIONS:
                check_types(value, default, f"{full}.")
            continue
        if not fits_default(value, default):
            raise ConfigError(f"key '{full}' expects {type_name(default)}, got {value!r}")


def type_name(default: Any) -> str:
    """'an int', 'a float', ... for messages."""
    name = type(default).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def fits_default(value: Any, default: Any) -> bool:
    """Whether `value` can stand where `default` goes (an int for a float, never a bool for a number)."""
    if isinstance(default, bool):
        return isinstance(value, bool) or (type(value) is int and value in (0, 1))  # YAML's `key: 1`
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def validate(cfg: Mapping[str, Any]) -> None:
    """Value checks that do not need any other module (decoding.config checks the decode section)."""
    if cfg["phase"] not in PHASES:
        raise ConfigError(f"key 'phase' must be one of {PHASES}, got {cfg['phase']!r}")
    if cfg["amp"] not in AMP_MODES:
        raise ConfigError(f"key 'amp' must be one of {AMP_MODES}, got {cfg['amp']!r}")
    if cfg["compile"] not in COMPILE_MODES:
        raise ConfigError(f"key 'compile' must be one of {COMPILE_MODES}, got {cfg['compile']!r}")
    for key in ("batch_size", "test_batch_size", "grad_accum", "eval_interval", "save_interval",
                "num_epoch"):
        if int(cfg[key]) < 1 and not (key == "num_epoch" and cfg[key] == 0):
            raise ConfigError(f"key '{key}' must be >= 1, got {cfg[key]!r}")
    if not 0 <= int(cfg["random_seed"]) < 2**32:
        raise ConfigError(f"key 'random_seed' must lie in 0..2**32-1, got {cfg['random_seed']!r}")
    if int(cfg["num_worker"]) < 0:
        raise ConfigError(f"key 'num_worker' must be >= 0 (0: load in the main process), got {cfg['num_worker']!r}")
    if not str(cfg["work_dir"]).strip():
        raise ConfigError("key 'work_dir' (--work-dir) is empty; name the folder for the run's outputs")
    if not 0.0 <= float(cfg["max_skipped_share"]) <= 1.0:
        raise ConfigError(f"key 'max_skipped_share' must lie in 0..1, got {cfg['max_skipped_share']!r}")
    if cfg["phase"] == "test" and not (cfg["load_weights"] or cfg["load_checkpoints"]):
        raise ConfigError("phase 'test' needs a model: pass --load-weights PATH.pt "
                          "(or --load-checkpoints PATH.pt)")


def resolve_config(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None
                   ) -> tuple[dict, argparse.Namespace]:
    """Parse the command line (with `parser`, default build_parser()'s options) and return
    (resolved config, parsed args)."""
    args = (parser or build_parser()).parse_args(argv)
    cfg = default_config()
    if args.config:
        cfg = merge_config(cfg, load_yaml(args.config), str(args.config))
    cfg = merge_config(cfg, cli_overrides(args), "command line")
    for item in args.set:
        keys, value = parse_set_item(item)
        cfg = merge_config(cfg, nest(keys, value), f"--set {item}")
    if isinstance(cfg["device"], int) and not isinstance(cfg["device"], bool):
        cfg["device"] = str(cfg["device"])  # YAML reads `device: 0` as a number
    check_types(cfg, default_config())
    validate(cfg)
    return cfg, args


def check_kwargs(fn: Callable, kwargs: Mapping[str, Any], section: str, extra_keys: bool = True) -> None:
    """Fail on a key that `fn` does not accept (unless it takes **kwargs and `extra_keys`), naming
    the closest, and on a value whose type cannot stand for the parameter's default."""
    params = explicit_parameters(fn)
    open_ended = extra_keys and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not extra_keys:  # a key named like `**kwargs` itself would pass through too
        params = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [] if open_ended else [f"'{section}.{key}'{closest_key(key, params)}" for key in kwargs
                                     if key not in params]
    if len(unknown) > 1:
        raise ConfigError(f"{len(unknown)} unknown keys ({getattr(fn, '__qualname__', fn)} does not take "
                          f"them): " + "; ".join(unknown))
    for key, value in kwargs.items():
        if key not in params:
            if open_ended:
                continue
            raise ConfigError(f"unknown key '{section}.{key}'{closest_key(key, params)} "
                              f"({getattr(fn, '__qualname__', fn)} does not take it)")
        # The annotation when it is one plain type (`frame_interval: int = 1`), else the default's.
        annotation = params[key].annotation
        name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        default = _EXAMPLE_OF.get(name, params[key].default)
        if (isinstance(default, (bool, int, float, str)) and value is not None
                and not fits_default(value, default)):
            raise ConfigError(f"key '{section}.{key}' expects {type_name(default)}, got {value!r}")


_EXAMPLE_OF = {"int": 0, "float": 0.0, "bool": False, "str": ""}


def explicit_parameters(fn: Callable) -> Mapping[str, inspect.Parameter]:
    """fn's parameters; for a class whose __init__ only passes **kwargs on, its nearest base's."""
    params = inspect.signature(fn).parameters
    forwards = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if forwards and inspect.isclass(fn):
        for base in fn.__mro__[1:]:
            if base is object or "__init__" not in vars(base):
                continue
            return explicit_parameters(base)
    return params


def save_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Write the resolved config as YAML (what the run actually used)."""
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
