"""HDCCF's recorded ablations (chapter 10): a run through the driver with the leave-one-out protocol, its record and
the plan's skip of stored variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recloss_lite.experiments import ablations


def test_recorded_ablation_run_round_trip(ml100k, tmp_path, capsys):
    torch.set_num_threads(1)
    parts = ablations.split(ml100k)
    assert parts["seen"].nnz == parts["train"].nnz + parts["valid"].nnz
    result, model = ablations.run("wo-u", parts, max_batches=20, epochs=1)
    assert model.lambda_user == 0.0 and model.lambda_item == ablations.MODEL["lambda_item"]
    assert set(result["metrics"]) == set(ablations.METRICS) and 0 < result["metrics"]["hr@10"] <= 1
    assert "not the recorded plan" in result["command"]  # changed settings never pose as the plan's command
    masses = result["histograms"]
    assert len(masses["positive"]) == ablations.BINS and sum(masses["negative"]) == pytest.approx(1.0)
    assert result["overlap"] == pytest.approx(np.minimum(masses["positive"], masses["negative"]).sum())
    path = ablations.record(result, tmp_path)
    assert path == tmp_path / "ml-100k" / "hdccf-wo-u.json"
    stored = ablations.load(tmp_path)["wo-u"]
    assert stored["metrics"] == result["metrics"] and stored["valid_metrics"] == result["valid_metrics"]
    ablations.reproduce(["wo-u"], tmp_path)  # stored: skipped, nothing trained
    assert "(done)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="HDCCF variants are"):
        ablations.reproduce(["nope"], tmp_path)
    with pytest.raises(ValueError, match="allowed keys"):
        ablations.run("hdccf", parts, lr_typo=1.0)
    assert ablations.command("p3") == "recloss-lite reproduce --dataset ml-100k --hdccf --losses p3"
