"""A NaN metric (a diverged run) never satisfies a comparison and sorts last."""
from __future__ import annotations

import torch


def test_nan_metrics_do_not_match_comparisons(repo) -> None:
    repo.commit({"w": torch.zeros(1)}, name="ok", message="a", metrics={"acc": [0.5, 0.9]})
    repo.commit({"w": torch.ones(1)}, name="diverged", message="b", metrics={"acc": [0.7, float("nan")]})
    names = lambda q: [r["name"] for r in repo.query(q).to_dicts()]  # noqa: E731
    assert names('select m where m.metrics["acc"] > 0.65') == ["ok"]
    # max() skips the NaN: the diverged run did reach 0.7 before it blew up
    assert sorted(names('select m where max(m.metrics["acc"]) > 0.65')) == ["diverged", "ok"]
    assert names('select m order by m.metrics["acc"] desc') == ["ok", "diverged"]
