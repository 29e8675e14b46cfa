"""The command line: its JSON contract, one-line errors for every expected failure (exit 2), finished runs kept,
and the --seeds summary. Real data (ml-100k) where a test trains through the CLI."""

from __future__ import annotations

import json
import sys

import pytest

from recloss_lite.experiments import cli


def test_cli_train_json_last_line(ml100k, tmp_path, capsys) -> None:
    code = cli.main(
        [
            "train",
            "--dataset",
            "ml-100k",
            "--loss",
            "mine+",
            "--epochs",
            "2",
            "--num-negatives",
            "32",
            "--lam",
            "1.2",
            "--out",
            str(tmp_path / "run"),
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last["metrics"]) >= {"recall@20", "ndcg@20"} and 0 < last["metrics"]["recall@20"] < 1
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["params"]["loss_params"] == {"lam": 1.2} and saved["params"]["num_negatives"] == 32
    assert saved["params"]["similarity"] == "cosine"  # the contrastive preset


def test_cli_reports_bad_input_as_one_error(capsys) -> None:
    assert cli.main(["train", "--dataset", "ml-100k", "--loss", "ccl", "--margin", "2"]) == 2
    err = capsys.readouterr().err
    assert "margin" in err and "[-1, 1]" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--lr", "inf"], "lr=inf: must be a finite number"),
        (["--eval-batch-size", "0"], "eval_batch_size=0: allowed range is >= 1"),
        (["--model", "hdccf", "--model-param", "modulation=maybe"], "modulation='maybe' must be true or false"),
        (["--model-param", "l2=5"], "model 'mf' takes none"),
        (["--model", "ials", "--model-param", "typo=1"], "ials has no parameter 'typo'"),
        (["--model-param", "novalue"], "expected NAME=VALUE"),
        (["--dropout", "1.0"], "dropout=1.0: allowed range is in [0, 1)"),
        (["--device", "cuda:x"], "device='cuda:x'"),
    ],
)
def test_bad_options_give_one_line_before_any_work(options, message, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "ml-100k", *options, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloss-lite train: error: ") and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_finished_run_is_reported_not_retrained(ml100k, tmp_path, capsys) -> None:
    args = [
        *"train --dataset ml-100k --loss bpr --sampler uniform --epochs 2 --out".split(),
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(args) == 0
    stored = (tmp_path / "result.json").read_bytes()
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "holds this finished run" in capsys.readouterr().out
    assert (tmp_path / "result.json").read_bytes() == stored
    assert cli.main([*args, "--epochs", "3"]) == 0  # a larger budget without --resume: still the stored run
    assert "holds this finished run" in capsys.readouterr().out
    assert (tmp_path / "result.json").read_bytes() == stored
    assert cli.main([*args, "--epochs", "3", "--resume"]) == 0  # --resume with a larger budget continues it
    assert json.loads((tmp_path / "result.json").read_text())["epochs"] == 3
    assert cli.main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "configuration differs in ['seed']" in err and "--overwrite" in err


def test_seeds_are_trained_and_summarised(ml100k, tmp_path, capsys) -> None:
    assert (
        cli.main(
            [
                *"train --dataset ml-100k --loss bpr --sampler uniform --epochs 2 --seeds 0 1 --out".split(),
                str(tmp_path),
                *"--quiet --json".split(),
            ]
        )
        == 0
    )
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    runs = [json.loads((tmp_path / f"seed{seed}" / "result.json").read_text()) for seed in (0, 1)]
    recalls = [run["metrics"]["recall@20"] for run in runs]
    summary = json.loads((tmp_path / "seeds.json").read_text())
    assert last["seeds"] == summary["seeds"] == [0, 1] and [run["params"]["seed"] for run in runs] == [0, 1]
    assert summary["metrics"]["recall@20"]["values"] == recalls
    assert summary["metrics"]["recall@20"]["mean"] == pytest.approx(sum(recalls) / 2)
    assert summary["metrics"]["recall@20"]["sd"] == pytest.approx(abs(recalls[0] - recalls[1]) / 2**0.5)


def test_record_stores_each_seed_in_the_results_store(ml100k, tmp_path, monkeypatch, capsys) -> None:
    from recloss_lite.experiments import results

    monkeypatch.setattr(results, "RESULTS_DIR", tmp_path / "results")
    args = [
        *(
            "train --dataset ml-100k --loss bpr --sampler uniform --epochs 1 --refit --seeds 0 1 --record tuned --out"
        ).split(),
        str(tmp_path / "runs"),
        *"--quiet --json".split(),
    ]
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/recloss-lite", *args])  # as the installed command runs
    assert cli.main(args) == 0
    json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the last line stays the JSON summary
    stored = {r["file"].rsplit("/", 1)[1]: r for r in results.load_results("ml-100k", tmp_path / "results")}
    assert sorted(stored) == ["mf-bpr-tuned-seed0.json", "mf-bpr-tuned-seed1.json"]
    for record in stored.values():
        assert record["refit"]["epochs"] == record["best_epoch"] == 1 and "selected_metrics" in record
        assert "--record tuned" in record["command"] and record["history"]
