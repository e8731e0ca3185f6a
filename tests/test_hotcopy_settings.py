"""Hot copies with a footprint-aware default: the `hotcopy.max_bytes` setting and `dlv stats`."""
from __future__ import annotations

import json

import pytest
import torch

from modelhub.errors import InputError
from modelhub.repo import settings


def _state(seed: int, rows: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(rows, 32, generator=g), "b.weight": torch.randn(rows, 16, generator=g)}


def test_the_default_cap_keeps_small_models_hot_and_large_ones_cold(repo, monkeypatch):
    monkeypatch.delenv("DLV_HOT_MAX_BYTES", raising=False)
    small = repo.commit(_state(0), name="small", message="one")
    assert repo.hot.path(small.id).exists()
    assert [(v.name, v.value, v.is_default) for v in repo.config()] == [("hotcopy.max_bytes", "1G", True)]
    monkeypatch.setattr(settings, "DEFAULT_HOT_MAX_BYTES", 4096)   # stands for a model larger than 1G
    big = repo.commit(_state(1), name="big", message="one")
    assert not repo.hot.path(big.id).exists()
    assert repo.checkout("big", rebuild_module=False).state_dict.keys() == _state(1).keys()
    assert not repo.hot.path(big.id).exists()   # a cold checkout does not write one either


def test_the_setting_caps_turns_off_and_lifts_hot_copies(repo, monkeypatch):
    monkeypatch.delenv("DLV_HOT_MAX_BYTES", raising=False)
    a = repo.commit(_state(0), name="a", message="one")
    assert repo.hot.path(a.id).exists()
    assert repo.set_config("hotcopy.max_bytes", "0").value == "0"
    assert repo.hot.version_ids() == set()   # applied at once
    b = repo.commit(_state(1), name="b", message="one")
    assert repo.hot.version_ids() == set()
    repo.set_config("hotcopy.max_bytes", "none")
    c = repo.commit(_state(2), name="c", message="one")
    assert repo.hot.version_ids() == {c.id}
    assert repo.set_config("hotcopy.max_bytes", None).is_default
    monkeypatch.setenv("DLV_HOT_MAX_BYTES", "0")   # the environment overrides the repository
    repo.commit(_state(3), name="b", message="two")
    assert repo.hot.version_ids() == {c.id}
    with pytest.raises(InputError, match=r"hotcopy.max_bytes 'lots' is not a size"):
        repo.set_config("hotcopy.max_bytes", "lots")
    with pytest.raises(InputError, match=r"unknown setting 'hot.max'; known settings: hotcopy.max_bytes"):
        repo.set_config("hot.max", "1G")
    assert b.id not in repo.hot.version_ids()


def test_cli_config_and_stats_show_both_footprints(cli, monkeypatch):
    monkeypatch.delenv("DLV_HOT_MAX_BYTES", raising=False)
    assert cli("init")[0] == 0
    from safetensors.torch import save_file
    save_file(_state(0, rows=512), cli.work / "w.safetensors")
    assert cli("commit", "w.safetensors", "--name", "m", "-m", "one")[0] == 0
    code, out, _ = cli("stats")
    assert code == 0 and "(archive only)" in out and "with hot copies, ratio" in out
    stats = json.loads(cli("stats", "--json")[1])
    assert stats["footprint_bytes"] == stats["stored_bytes"] + stats["hot_bytes"] > stats["stored_bytes"]
    assert stats["ratio_with_hot_copies"] < stats["ratio"]
    assert cli("config", "hotcopy.max_bytes")[1].strip() == "1G"
    assert cli("config", "hotcopy.max_bytes", "0")[0] == 0
    assert json.loads(cli("stats", "--json")[1])["hot_bytes"] == 0
    code, out, _ = cli("config")
    assert code == 0 and "hotcopy.max_bytes" in out and "0" in out and "(default)" not in out
    code, _, err = cli("config", "--unset", "hotcopy.max_bytes", "2G")
    assert code == 2 and "either a VALUE or --unset" in err
    assert cli("config", "hotcopy.max_bytes", "--unset")[0] == 0
    assert "(default)" in cli("config")[1]
