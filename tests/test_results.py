"""The results store: record, load, the published rows and the comparison table (chapter 07_training)."""

from __future__ import annotations

import json

import pytest

from recloss_lite.experiments import results


def _result(**changes: object) -> dict:
    base = {
        "dataset": "gowalla",
        "model": "mf",
        "loss": "ccl",
        "params": {"lr": 1e-4},
        "metrics": {"recall@20": 0.18, "ndcg@20": 0.15, "hr@20": 0.6},
        "best_epoch": 40,
        "epochs": 50,
        "seconds": 12.5,
        "command": "recloss-lite train --dataset gowalla --loss ccl",
        "commit": "abc",
        "created": "2024-01-01T00:00:00+00:00",
        "history": [{"epoch": 1}],
    }
    return {**base, **changes}


def test_result_file_round_trip(tmp_path):
    path = results.record_result(_result(), root=tmp_path)
    assert path == tmp_path / "gowalla" / "mf-ccl.json"
    tagged = results.record_result(_result(loss="bpr"), tag="seed1", root=tmp_path)
    assert tagged.name == "mf-bpr-seed1.json"
    loaded = results.load_results("gowalla", root=tmp_path)
    assert [(r["loss"], r["tag"]) for r in loaded] == [("bpr", "seed1"), ("ccl", None)]
    record = json.loads(path.read_text())
    assert set(record) == set(results.FIELDS) | {"history"}  # the optional history is kept, for learning curves
    assert record["metrics"] == {"recall@20": 0.18, "ndcg@20": 0.15}
    assert results.load_results("yelp2018", root=tmp_path) == []
    swept = results.record_result(
        _result(valid_metrics={"recall@20": 0.2}, stop_reason="time budget"), "tp", root=tmp_path
    )
    assert json.loads(swept.read_text())["valid_metrics"] == {"recall@20": 0.2}  # optional fields are kept


def test_record_result_names_missing_fields(tmp_path):
    with pytest.raises(ValueError, match="commit"):
        results.record_result({k: v for k, v in _result().items() if k != "commit"}, root=tmp_path)
    with pytest.raises(ValueError, match="ndcg@20"):
        results.record_result(_result(metrics={"recall@20": 0.1}), root=tmp_path)
    with pytest.raises(ValueError, match="tag"):
        results.result_path("gowalla", "mf", "ccl", tag="../x")


def test_published_table_and_comparison(tmp_path):
    assert len(results.PUBLISHED) == 19 and all(row["source"] for row in results.PUBLISHED)
    ccl = {row["dataset"]: row["metrics"] for row in results.PUBLISHED if row["label"] == "MF-CCL"}
    assert ccl["gowalla"] == {"recall@20": 0.1837, "ndcg@20": 0.1493}
    results.record_result(_result(), root=tmp_path)
    results.record_result(_result(model="ease", loss=None), root=tmp_path)
    # A tagged run of the same loss (a tuned recipe, a seed) is not the plan's row, whatever the file order.
    results.record_result(_result(metrics={"recall@20": 0.5, "ndcg@20": 0.5}), tag="tuned", root=tmp_path)
    results.record_result(
        _result(loss="mine+", metrics={"recall@20": 0.5, "ndcg@20": 0.5}), tag="tuned-seed1", root=tmp_path
    )
    rows = results.comparison(
        "gowalla",
        [("mf", "ccl", "c1"), ("mf", "bpr", "c2"), ("mf", "mine+", "c3"), ("ease", None, "c4")],
        root=tmp_path,
    )
    assert rows[3]["difference"]["ndcg@20"] == pytest.approx(0.15 - 0.1467)
    assert rows[0]["difference"]["recall@20"] == pytest.approx(0.18 - 0.1837)
    assert rows[1]["metrics"] is None and rows[1]["published"]["recall@20"] == 0.1627
    assert rows[2]["metrics"] is None and rows[2]["published"]["recall@20"] == 0.1882  # MF+BSL, no run stored
    assert rows[2]["difference"] is None
