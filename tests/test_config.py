"""Config resolution: defaults < YAML (with `base:`) < command line; unknown keys named."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from utils.config import ConfigError, check_kwargs, closest_key, default_config, resolve_config
from utils.device import parse_device_list, select_device
from utils.distributed import ShardedSampler
from utils.optimizer import EpochSchedule

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_priority_command_line_over_file_over_defaults(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", {"batch_size": 7, "num_epoch": 3,
                                           "optimizer_args": {"base_lr": 0.5}})
    cfg, _ = resolve_config(["--config", cfg_file, "--batch-size", "9",
                             "--set", "optimizer_args.step=[1, 2]", "--set", "num_epoch=4"])
    assert cfg["batch_size"] == 9                              # command line beats the file
    assert cfg["num_epoch"] == 4                               # --set beats the file
    assert cfg["optimizer_args"]["base_lr"] == 0.5             # file beats the default
    assert cfg["optimizer_args"]["step"] == [1, 2]
    assert cfg["optimizer_args"]["optimizer"] == "Adam"        # untouched default survives
    assert cfg["test_batch_size"] == default_config()["test_batch_size"]


def test_underscore_spelling_of_options_is_accepted(tmp_path):
    cfg, _ = resolve_config(["--work_dir", str(tmp_path), "--num_epoch", "2"])
    assert cfg["work_dir"] == str(tmp_path) and cfg["num_epoch"] == 2


def test_unknown_key_in_file_names_the_closest(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", {"batch_sise": 2})
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key 'batch_sise'.*'batch_size'"):
        resolve_config(["--config", cfg_file])


def test_unknown_nested_key_via_set_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer_args.base_rl'.*'base_lr'"):
        resolve_config(["--set", "optimizer_args.base_rl=0.1"])


def test_open_section_keys_are_checked_against_the_constructor():
    def feeder(prefix, gloss_dict, *, input_size=224):
        return None

    check_kwargs(feeder, {"prefix": 1, "gloss_dict": 2, "input_size": 3}, "feeder_args")
    with pytest.raises(ConfigError, match=r"unknown key 'feeder_args.input_sise'.*'input_size'"):
        check_kwargs(feeder, {"input_sise": 3}, "feeder_args")


def test_type_and_value_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        resolve_config(["--set", "batch_size=[1]"])
    with pytest.raises(ConfigError, match="'phase' needs a model|--load-weights"):
        resolve_config(["--phase", "test"])
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve_config(["--set", "batch_size"])


def test_the_published_recipe_is_the_one_source_of_defaults():
    recipe = yaml.safe_load((REPO / "config" / "baseline.yaml").read_text())
    assert default_config() == recipe
    no_file, _ = resolve_config([])
    from_file, _ = resolve_config(["--config", str(REPO / "config" / "baseline.yaml")])
    assert no_file == from_file == recipe
    assert recipe["loss_weights"] == {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}


def test_keys_nothing_reads_are_refused_with_what_to_do(tmp_path):
    for key in ("random_fix", "optimizer_args.learning_ratio"):
        with pytest.raises(ConfigError, match=f"'{key}' was removed"):
            resolve_config(["--set", f"{key}=1"])
    cfg_file = write(tmp_path / "old.yaml", {"random_fix": True})
    with pytest.raises(ConfigError, match=r"old\.yaml: key 'random_fix' was removed"):
        resolve_config(["--config", cfg_file])


def test_dataset_files_extend_the_baseline():
    cfg, _ = resolve_config(["--config", str(REPO / "config" / "phoenix2014-T.yaml")])
    assert cfg["dataset"] == "phoenix2014-T"
    assert cfg["model_args"]["hsa_attention"] is False
    assert cfg["model_args"]["c2d_type"] == "resnet34"
    assert cfg["loss_weights"] == {"SeqCTC": 1.0, "ConvCTC": 1.0, "Dist": 25.0, "Cu": 0.0005, "Cp": 0.0005}
    assert cfg["optimizer_args"]["step"] == [40, 60, 80] and cfg["batch_size"] == 2
    files = sorted((REPO / "config").glob("*.yaml"))
    assert len(files) >= 7
    for path in files:
        resolve_config(["--config", str(path)])


def test_closest_key_hint():
    assert "'work_dir'" in closest_key("workdir", default_config())
    assert closest_key("zzzzzz", default_config()) == ""


def test_device_parsing():
    assert parse_device_list("cpu") is None
    assert parse_device_list("0,1") == [0, 1]
    assert parse_device_list(0) == [0]
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="expected 'cpu'"):
        parse_device_list("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="use --device cpu"):
            select_device("0")


@pytest.mark.parametrize("size,world", [(7, 2), (8, 3), (5, 1), (2, 4)])
def test_eval_sampler_shards_without_padding(size, world):
    shards = [list(ShardedSampler(size, world, r, shuffle=False)) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(size))                         # every sample once, none padded in
    assert [len(ShardedSampler(size, world, r)) for r in range(world)] == [len(s) for s in shards]


def test_train_sampler_is_seeded_per_epoch_and_resumable():
    a = ShardedSampler(10, 2, 0, shuffle=True, seed=3, drop_last=True)
    b = ShardedSampler(10, 2, 1, shuffle=True, seed=3, drop_last=True)
    a.set_epoch(1)
    b.set_epoch(1)
    assert len(set(a) | set(b)) == 10 and len(list(a)) == len(list(b)) == 5
    first = list(a)
    a.set_epoch(2)
    assert list(a) != first
    a.set_epoch(1)
    a.set_start(2)
    assert list(a) == first[2:] and len(a) == 3
    single = ShardedSampler(10, 1, 0, shuffle=True, seed=3, drop_last=True)
    single.set_epoch(1)
    assert sorted(list(single)[:4]) == sorted(first[:2] + list(b)[:2])  # same global batches


def test_epoch_schedule_matches_multistep():
    sched = EpochSchedule("multistep", [40, 60, 80], 0.2, 100)
    assert [sched(e) for e in (0, 39, 40, 59, 60, 80, 99)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04, 0.008, 0.008])
    assert EpochSchedule("cosine", [], 0.2, 10)(10) == pytest.approx(0.0)


def test_a_binary_file_or_a_recursive_alias_is_one_config_error(tmp_path):
    binary = tmp_path / "model.yaml"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="not a text file"):
        resolve_config(["--config", str(binary)])
    recursive = tmp_path / "loop.yaml"
    recursive.write_text("model_args: &x {c2d_type: [*x]}\n")
    with pytest.raises(ConfigError, match="contains itself"):
        resolve_config(["--config", str(recursive)])
    with pytest.raises(ConfigError, match="contains itself"):
        resolve_config(["--set", "optimizer_args.step=&x [*x]"])
