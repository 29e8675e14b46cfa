"""recloss-lite tune: successive halving on validation only, every trial stored."""

from __future__ import annotations

import json

import pytest

from recloss_lite.experiments import cli, tune


def test_tune_halves_the_grid_on_validation_and_stores_every_trial(ml100k, tmp_path, capsys) -> None:
    code = cli.main(
        [
            *(
                "tune --dataset ml-100k --loss mine+ --num-negatives 32 --epochs 20 --grid tau=0.1,0.5 "
                "lr=1e-3,1e-2 --first-epochs 1 --eta 2 --results"
            ).split(),
            str(tmp_path / "sweeps"),
            "--runs",
            str(tmp_path / "runs"),
            *"--json --quiet".split(),
        ]
    )
    assert code == 0
    winner = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    search = json.loads((tmp_path / "sweeps" / "ml-100k" / "tune" / "mf-mine+.json").read_text())
    assert [len(r["ranking"]) for r in search["rounds"]] == [4, 2] and [r["epochs"] for r in search["rounds"]] == [1, 2]
    first, second = ([row["trial"] for row in r["ranking"]] for r in search["rounds"])
    assert sorted(second) == sorted(first[:2])  # the better half continues
    assert [row["valid"] for row in search["rounds"][1]["ranking"]] == sorted(
        (row["valid"] for row in search["rounds"][1]["ranking"]), reverse=True
    )
    assert winner["trial"] == second[0] and "--epochs 20" in winner["command"]  # the full budget, not a round's
    trials = sorted((tmp_path / "sweeps" / "ml-100k" / "tune" / "mf-mine+").glob("*.json"))
    assert len(trials) == 4
    for path in trials:
        trial = json.loads(path.read_text())
        assert all("recall@20" in r["valid_metrics"] for r in trial["rounds"])
        assert "metrics" not in trial  # the test split is never scored while choosing
        assert [r["epochs"] for r in trial["rounds"]] in ([1], [1, 2])


def test_grid_values_take_the_type_of_their_setting() -> None:
    grid = tune.parse_grid(["tau=0.05,0.1", "num_negatives=16,64", "shared_negatives=True,false", "sampler=dns"])
    assert grid == {
        "tau": [0.05, 0.1],
        "num_negatives": [16, 64],
        "shared_negatives": [True, False],
        "sampler": ["dns"],
    }


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("shared_negatives=yes", r"the values of 'shared_negatives' must be true or false"),
        ("num_negatives=8.5", r"the values of 'num_negatives' must be ints"),
        ("tau=", r"expected NAME=V1,V2,\.\.\."),
        ("temperature=1", r"'temperature' is neither a loss parameter"),
    ],
)
def test_a_bad_grid_pair_is_refused_naming_it(pair, message) -> None:
    with pytest.raises(ValueError, match=message):
        tune.parse_grid([pair])


def test_a_labelled_search_is_stored_under_its_label(ml100k, tmp_path, capsys) -> None:
    folders = ["--results", str(tmp_path / "sweeps"), "--runs", str(tmp_path / "runs")]
    argv = "tune --dataset ml-100k --loss ccl --num-negatives 16 --grid lr=1e-3,1e-2 --first-epochs 1 --eta 2 --quiet"
    assert cli.main([*argv.split(), *folders, "--label", "mf-ccl-lr"]) == 0
    stored = tmp_path / "sweeps" / "ml-100k" / "tune"
    assert sorted(path.name for path in stored.iterdir()) == ["mf-ccl-lr", "mf-ccl-lr.json"]
    assert json.loads((stored / "mf-ccl-lr.json").read_text())["grid"] == {"lr": [0.001, 0.01]}


def test_finish_trains_the_last_rounds_trials_to_the_end_and_chooses_there(ml100k, tmp_path, capsys) -> None:
    folders = ["--results", str(tmp_path / "sweeps"), "--runs", str(tmp_path / "runs")]
    argv = (
        "tune --dataset ml-100k --loss ccl --num-negatives 16 --epochs 4 --eval-every 1 --grid lr=1e-3,1e-2 "
        "--first-epochs 1 --eta 2 --quiet --json"
    )
    stored = tmp_path / "sweeps" / "ml-100k" / "tune"
    assert cli.main([*argv.split(), *folders]) == 0  # the search as it was first run: one round of 1 epoch
    first_search = json.loads((stored / "mf-ccl.json").read_text())
    first_trials = {path.name: json.loads(path.read_text()) for path in (stored / "mf-ccl").glob("*.json")}
    assert cli.main([*argv.split(), "--finish", *folders]) == 0  # run again: the finalists train on to 4 epochs
    winner = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    search = json.loads((stored / "mf-ccl.json").read_text())
    assert search["finish"] is True
    assert search["rounds"][0] == first_search["rounds"][0]  # the first round read back as it stood, not retrained
    assert cli.main([*argv.split(), "--finish", *folders]) == 0  # once more: every trial has trained past round 1
    capsys.readouterr()
    again = json.loads((stored / "mf-ccl.json").read_text())
    assert again["rounds"] == search["rounds"]  # round 1 read back from 4-epoch histories as it stood at 1 epoch
    for name, trial in first_trials.items():
        assert json.loads((stored / "mf-ccl" / name).read_text())["rounds"][0] == trial["rounds"][0]
    assert [r["epochs"] for r in search["rounds"]] == [1, 4] and search["rounds"][-1]["final"] is True
    first, final = ([row["trial"] for row in r["ranking"]] for r in search["rounds"])
    assert sorted(final) == sorted(first)  # both finalists trained on, not only the first round's leader
    assert winner["trial"] == final[0] and winner["valid"] == search["rounds"][-1]["ranking"][0]["valid"]
    for name in first:
        trial = json.loads((tmp_path / "sweeps" / "ml-100k" / "tune" / "mf-ccl" / f"{name}.json").read_text())
        assert [r["epochs"] for r in trial["rounds"]] == [1, 4]
        assert trial["rounds"][1]["valid_metrics"]["recall@20"] >= trial["rounds"][0]["valid_metrics"]["recall@20"]


def test_finish_needs_more_epochs_than_the_first_round(ml100k) -> None:
    from recloss_lite.core.training import TrainConfig

    with pytest.raises(ValueError, match=r"--epochs 2 must exceed --first-epochs 2"):
        tune.successive_halving(TrainConfig(dataset="ml-100k", epochs=2), {"lr": [1e-3]}, 2, finish=True)
