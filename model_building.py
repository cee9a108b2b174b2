"""Config -> model, for training and the inference tools alike: the registered class a config's
`model` key names, its checked constructor arguments, the built model and loading weights into it."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import torch
from torch import Tensor, nn

from utils.checkpoint import CheckpointMismatchError, shape_mismatches
from utils.config import default_config, explicit_parameters
from utils.errors import ConfigError
from utils.pretrained import IMAGENET, SCRATCH, resolve_pretrained
from utils.registry import check_plain_args


def model_class(name: Any, source: str = "") -> type[nn.Module]:
    """The registered model class a config's `model` key names (slr_network.MODELS): a name from
    a file selects a class, it is never imported or called as a dotted path."""
    import corrnet_network  # noqa: F401  the family's baselines register on import
    import vac_network  # noqa: F401
    from slr_network import MODELS  # the project's models register on import

    return MODELS.get(name, source)


def model_kwargs(cfg: Mapping[str, Any], cls: Any, num_classes: int) -> tuple[dict, str]:
    """Constructor kwargs of the config's model (without loss_weights, which the code passes),
    and a note when the config's num_classes was replaced by the vocabulary's. Only plain values
    of the constructor's own parameters pass (utils.registry.check_plain_args)."""
    if not isinstance(cfg["model_args"], Mapping):
        raise ConfigError(f"key 'model_args' must be a mapping, got {type(cfg['model_args']).__name__}")
    kwargs = own_entries(cfg["model_args"], explicit_parameters(cls), "model_args")
    if "loss_weights" in kwargs:
        raise ConfigError("key 'model_args.loss_weights' is not a model argument of the config "
                          "(the top-level 'loss_weights' key provides it)")
    check_plain_args(cls, kwargs, "model_args")
    note = ""
    if "num_classes" in kwargs and int(kwargs["num_classes"]) != num_classes:
        note = (f"model_args.num_classes={kwargs['num_classes']} replaced by {num_classes} "
                f"(vocabulary size + CTC blank)")
    kwargs["num_classes"] = num_classes
    check_plain_args(cls, kwargs, "model_args")
    return kwargs, note


MAX_PARAM_GIB = 8.0  # 27x the published ResNet34 model; above it a size in a file is taken as a typo


def construct_model(cls: type[nn.Module], kwargs: Mapping[str, Any], source: str,
                    max_param_gib: float = MAX_PARAM_GIB) -> nn.Module:
    """`cls(**kwargs)`, first built on the meta device (no memory): arguments it cannot be built
    from, or parameters over `max_param_gib` GiB, are one ConfigError naming `source`."""
    import inspect

    probe = dict(kwargs)
    if "pretrained" in inspect.signature(cls).parameters:
        probe["pretrained"] = None  # never read a file for the probe
    try:
        with torch.device("meta"):
            shell = cls(**probe)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError, AssertionError, AttributeError,
            OverflowError) as exc:
        text = " ".join(str(exc).split())[:300]
        raise ConfigError(f"cannot build the model {cls.__name__} from {source}: "
                          f"{type(exc).__name__}: {text}") from exc  # chained: a bug keeps its traceback
    size = sum(t.numel() * t.element_size() for t in [*shell.parameters(), *shell.buffers()])
    if not math.isfinite(max_param_gib) or size > max_param_gib * 2**30:
        raise ConfigError(f"the model {cls.__name__} of {source} would hold {size / 2**30:,.1f} GiB of "
                          f"parameters, more than --max-param-gib {max_param_gib:g}: check its sizes "
                          f"(model_args.hidden_size, ...), or pass --max-param-gib N for a model this large")
    del shell
    return cls(**kwargs)


def model_loss_weights(cfg: Mapping[str, Any], cls: Any) -> dict:
    """The config's loss weights for `cls` (all of them if it lists no `loss_names`)."""
    if not isinstance(cfg["loss_weights"], Mapping):
        raise ConfigError(f"key 'loss_weights' must be a mapping, got {type(cfg['loss_weights']).__name__}")
    names = getattr(cls, "loss_names", None)
    return dict(cfg["loss_weights"]) if names is None else \
        own_entries(cfg["loss_weights"], names, "loss_weights")


def own_entries(values: Mapping[str, Any], accepted: Collection[str], section: str) -> dict:
    """`values` without the entries every config inherits from the STF-Net recipe
    (config/baseline.yaml) that the model does not take: `hsa_attention` or the `Cu` / `Cp` terms
    are not VAC's. Any other entry it does not take is still refused, by name."""
    recipe = default_config()[section]
    return {key: value for key, value in values.items()
            if key in accepted or key not in recipe or recipe[key] != value}


def _head(items: Sequence[str], count: int = 5) -> str:
    """The first `count` items, comma separated, with how many more there are."""
    more = f" ... (+{len(items) - count})" if len(items) > count else ""
    return ", ".join(items[:count]) + more


def load_weights(model: nn.Module, state: Mapping[str, Tensor], source: str,
                 ignore: Sequence[str] = (), hint: str = "") -> list[str]:
    """Load `state` into `model`: every key must fit except the `ignore` prefixes; returns the
    dropped keys. What does not fit is reported in one error with `hint` on how to fix it."""
    def ignored(key: str) -> bool:
        return any(key == w or key.startswith(w + ".") for w in ignore)

    dropped = [k for k in state if ignored(k)]
    state = {k: v for k, v in state.items() if not ignored(k)}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not ignored(k)]
    unexpected = [k for k in state if k not in expected]
    wrong = shape_mismatches(expected, state)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            f"checkpoint {source} does not fit the model: missing {len(missing)} "
            f"[{_head(missing)}], unexpected {len(unexpected)} [{_head(unexpected)}], shape "
            f"mismatches {len(wrong)} [{_head(wrong)}]. {hint}".rstrip())
    model.load_state_dict(state, strict=not ignore)
    return dropped


def backbone_init(cfg: Mapping[str, Any], model_args: Mapping[str, Any], resume_from: Path | None
                  ) -> tuple[Any, str]:
    """What the backbone starts from (the `pretrained` argument to build with) and the log line
    saying so: the checkpoint the run loads, else model_args.pretrained (imagenet, none or a
    file; imagenet is fetched into torch's hub cache, or the run stops saying how to get it)."""
    pretrained = model_args.get("pretrained")
    loaded = resume_from or cfg["load_weights"] or (cfg["phase"] != "train" and cfg["load_checkpoints"])
    backbone_ignored = not resume_from and any(
        "conv2d".startswith(str(p)) or str(p).startswith("conv2d") for p in cfg["ignore_weights"])
    if loaded and not backbone_ignored:
        return None, (f"initial weights: {loaded} (model_args.pretrained: {pretrained} is not used; "
                      f"the checkpoint's weights replace any initialisation)")
    if pretrained in SCRATCH:
        return None, ("backbone initial weights: random, trained from scratch (model_args.pretrained: "
                      "none; the published recipe starts from ImageNet: model_args.pretrained: imagenet)")
    arch = str(model_args.get("c2d_type"))
    path = resolve_pretrained(arch, pretrained)
    source = f"torchvision's ImageNet {arch}" if pretrained in IMAGENET else f"a {arch} file"
    return str(path), (f"backbone initial weights: {source}, {path} (model_args.pretrained: "
                       f"{pretrained})")


def build_model(cfg: Mapping[str, Any], num_classes: int, log: Callable[[str], None],
                resume_from: Path | None = None, max_param_gib: float = MAX_PARAM_GIB
                ) -> tuple[nn.Module, dict]:
    """The configured model (it computes its own loss terms) and its constructor arguments."""
    cls = model_class(cfg["model"])
    model_args, note = model_kwargs(cfg, cls, num_classes)
    if note:
        log(note)
    built = dict(model_args)
    if "pretrained" in model_args:
        built["pretrained"], source = backbone_init(cfg, model_args, resume_from)
        log(source)
    core = construct_model(cls, {**built, "loss_weights": model_loss_weights(cfg, cls)}, "model_args",
                           max_param_gib)
    return core, model_args
