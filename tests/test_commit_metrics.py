"""`dlv commit --metric K=V --metrics-file F`: a --metric has no step, so next to a file it is a final value.

The README's tour commits `--metric val_acc=0.91 --metrics-file train.jsonl` with a file
that starts at step 0; the value must land after the file's run (and be the metric's latest
value), not collide with the file's step 0.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import modelhub
from modelhub.errors import InputError
from modelhub.repo import load_metrics_file, with_final_values


def test_final_values_follow_the_last_step_of_every_series() -> None:
    series = {"loss": [(0, 1.0), (1, 0.5), (7, 0.2)], "val_acc": [(0, 0.1), (3, 0.8)]}
    assert with_final_values(series, {"val_acc": [0.91], "test_acc": [0.9, 0.95]}) == {
        "loss": [(0, 1.0), (1, 0.5), (7, 0.2)],
        "val_acc": [(0, 0.1), (3, 0.8), (8, 0.91)],
        "test_acc": [(8, 0.9), (9, 0.95)],
    }
    assert series["val_acc"] == [(0, 0.1), (3, 0.8)]  # the caller's series are not changed


def test_final_values_without_a_file_are_steps_0_1_2() -> None:
    assert with_final_values({}, {"loss": [1.0, 0.5], "acc": [0.7]}) == {
        "loss": [(0, 1.0), (1, 0.5)], "acc": [(0, 0.7)]}


@pytest.fixture
def weights(cli):
    assert cli("init")[0] == 0
    torch.manual_seed(0)
    save_file({"w": torch.randn(4, 4)}, str(cli.work / "w.safetensors"))
    return cli


def _metrics(cli, ref: str) -> dict[str, dict]:
    return {m["name"]: m for m in json.loads(cli("desc", ref, "--json")[1])["metrics"]}


def test_a_metric_next_to_a_file_that_starts_at_step_0_is_its_final_value(weights) -> None:
    (weights.work / "train.jsonl").write_text(
        '{"step": 0, "loss": 1.6, "val_acc": 0.51}\n{"step": 1, "loss": 0.7, "val_acc": 0.81}\n')
    code, _, err = weights("commit", "-m", "baseline", "--name", "net", "--weights", "w.safetensors",
                           "--metric", "val_acc=0.91", "--metrics-file", "train.jsonl")
    assert code == 0, err
    metrics = _metrics(weights, "net")
    assert (metrics["val_acc"]["last"], metrics["val_acc"]["last_step"], metrics["val_acc"]["n_points"]) == (0.91, 2, 3)
    assert (metrics["loss"]["last"], metrics["loss"]["last_step"]) == (0.7, 1)
    assert len(modelhub.open_repo(weights.work).query('select m where m.metrics["val_acc"] > 0.9').rows) == 1


def test_a_step_the_file_gives_twice_is_blamed_on_the_file_line(weights) -> None:
    (weights.work / "train.jsonl").write_text('{"step": 0, "loss": 1.6}\n{"step": 0, "loss": 0.7}\n')
    code, _, err = weights("commit", "-m", "x", "--name", "net", "--weights", "w.safetensors",
                           "--metric", "loss=0.5", "--metrics-file", "train.jsonl")
    assert code == 2 and "train.jsonl:2: metric 'loss' has step 0 twice" in err
    with pytest.raises(InputError, match=r"train.jsonl:2: metric 'loss' has step 0 twice"):
        load_metrics_file(weights.work / "train.jsonl")


def test_repeated_metrics_without_a_file_are_still_a_series(weights) -> None:
    code, _, err = weights("commit", "-m", "x", "--name", "net", "--weights", "w.safetensors",
                           "--metric", "loss=1.0", "--metric", "loss=0.5")
    assert code == 0, err
    loss = _metrics(weights, "net")["loss"]
    assert (loss["last"], loss["last_step"], loss["n_points"]) == (0.5, 1, 2)
