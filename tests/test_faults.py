"""Fault injection: what a careful user or a hostile tester can do to a run, and the exact outcome of each.

Killed processes (SIGKILL in an epoch, an interruption while the result is written), full disks, output folders
that cannot be written, corrupt and malicious checkpoints, malformed data files through the CLI. Each test checks
that the error names what was wrong and where, and that nothing already finished changed.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recloss_lite.core import training
from recloss_lite.core.training import TrainConfig, fit
from recloss_lite.experiments import cli

TRAIN = [
    sys.executable,
    *(
        "-m recloss_lite.experiments.cli train --dataset ml-100k --loss bpr --sampler uniform "
        "--batch-size 512 --epochs 6 --patience 50 --quiet --json"
    ).split(),
]


def _config(**overrides) -> TrainConfig:
    return TrainConfig(
        **{"dataset": "toy", "epochs": 3, "dim": 8, "lr": 1e-2, "batch_size": 128, "valid_fraction": 0.2, **overrides}
    )


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkill_during_an_epoch_then_resume_equals_the_uninterrupted_run(ml100k, tmp_path) -> None:
    reference = _last_json(
        subprocess.run([*TRAIN, "--out", str(tmp_path / "whole")], capture_output=True, text=True, check=True).stdout
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen([*TRAIN, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # inside a later epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "result.json").exists(), "the run finished before it could be killed: make it longer"
    # A kill in mid-write may leave checkpoint.pt.tmp (nothing can clean up after SIGKILL); the checkpoint itself is
    # always whole, because it is only ever replaced by a rename.
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["state"]["epoch"] >= 1
    resumed = subprocess.run([*TRAIN, "--out", str(killed), "--resume"], capture_output=True, text=True, check=True)
    assert _last_json(resumed.stdout)["metrics"] == reference["metrics"]
    history = [json.loads((folder / "result.json").read_text())["history"] for folder in (tmp_path / "whole", killed)]
    assert [e["loss"] for e in history[0]] == [e["loss"] for e in history[1]]


@pytest.mark.parametrize("model", ["mf", "ials", "ease", "hdccf"])
def test_interrupted_while_writing_the_result_then_resume_returns_the_same_result(
    toy, tmp_path, monkeypatch, model
) -> None:
    config = _config(model=model, **({"model_params": {"modulation": False}} if model == "hdccf" else {}))
    reference, _ = fit(config, toy, progress=False)
    real = training.write_json_atomic

    def killed(path, payload):
        if Path(path).name == "result.json":
            Path(str(path) + ".tmp").write_text("{half a fi")  # as if killed in mid-write
            raise KeyboardInterrupt
        return real(path, payload)

    with monkeypatch.context() as patch:
        patch.setattr(training, "write_json_atomic", killed)
        with pytest.raises(KeyboardInterrupt):
            fit(config, toy, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()
    resumed, _ = fit(config, toy, out_dir=tmp_path, resume=True, progress=False)
    assert resumed["metrics"] == reference["metrics"] and resumed["epochs"] == reference["epochs"]
    assert json.loads((tmp_path / "result.json").read_text())["metrics"] == reference["metrics"]


def test_a_full_disk_fails_with_the_file_and_leaves_no_temporary_file(toy, tmp_path, monkeypatch, capsys) -> None:
    def full(payload, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(training.torch, "save", full)
    with pytest.raises(OSError, match="No space left on device"):
        fit(_config(), toy, out_dir=tmp_path / "run", progress=False)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == []
    assert cli.main(["train", "--dataset", "ml-100k", "--epochs", "1", "--out", str(tmp_path / "cli"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("recloss-lite train: error: ") and "checkpoint.pt.tmp: No space left on device" in err
    assert "Traceback" not in err and not list((tmp_path / "cli").iterdir())


def test_an_output_path_that_cannot_be_a_folder_is_refused_before_training(toy, tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    trained = []
    monkeypatch.setattr(training.MFTrainable, "train_epoch", lambda *args: trained.append(1))
    for out in (blocker, blocker / "run"):
        with pytest.raises(ValueError, match=f"--out {out}: cannot write the run there"):
            fit(_config(), toy, out_dir=out, progress=False)
    assert trained == [] and blocker.read_text() == "not a folder"


def test_a_corrupt_checkpoint_is_named_and_left_alone(toy, tmp_path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(ValueError, match=r"checkpoint.pt: not a readable checkpoint .*--overwrite"):
        fit(_config(), toy, out_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"\x80\x02garbage"
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        fit(_config(), toy, out_dir=tmp_path, resume=True, progress=False)


class _Payload:
    """An object whose unpickling would run code: it must never be unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(toy, tmp_path) -> None:
    payload = _Payload()
    payload.marker = tmp_path / "code-ran"
    torch.save({"config": _config().to_dict(), "state": payload}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        fit(_config(), toy, out_dir=tmp_path, resume=True, progress=False)
    assert not payload.marker.exists()


def test_a_diverging_run_stops_with_the_epoch_and_keeps_its_checkpoints(toy, tmp_path) -> None:
    config = _config(loss="mse", loss_params={"neg_weight": 1.0}, lr=1e30 * 1e8, epochs=3)
    with pytest.raises(FloatingPointError, match="epoch 1: the training loss is"):
        fit(config, toy, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()


@pytest.mark.filterwarnings("ignore::recloss_lite.core.data.ChecksumWarning")  # the user's own files: a note
@pytest.mark.parametrize(
    ("train", "test", "message"),
    [
        ("0 1 2\n1 x 3\n", "0 4\n", "train.txt:2: expected non-negative integer ids, got 'x'"),
        ("", "0 1\n", "train.txt holds no interaction"),
        ("0 1 2\n", "", "test.txt holds no interaction"),
        ("0 1 2\n1 3\n", "0 2\n", "test.txt:1: user 0 item 2 is also in train.txt"),
        ("0 1 99999999999\n", "0 1\n", "train.txt:1"),
    ],
)
def test_malformed_data_files_give_one_line_naming_the_file(tmp_path, capsys, train, test, message) -> None:
    (tmp_path / "train.txt").write_text(train)
    (tmp_path / "test.txt").write_text(test)
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "gowalla",
                "--data-dir",
                str(tmp_path),
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("recloss-lite train: error: ") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
