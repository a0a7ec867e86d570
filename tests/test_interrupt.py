"""Interrupted fine-tuning: Ctrl-C keeps the best weights so far; checkpoints resume exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import Callback

from sktransfer import FineTuneClassifier
from sktransfer._resume import read_checkpoint

from ._helpers import X_TOY, Y_TOY, default_sigint, toy


class CtrlC(Callback):
    """Deliver a real SIGINT to this process during training batch ``batch`` of ``epoch``."""

    def __init__(self, epoch: int, batch: int = 1):
        self.epoch, self.batch = epoch, batch

    def initialize(self):
        self.epochs_seen_, self.batches_ = [], 0
        return self

    def on_epoch_begin(self, net, **kwargs):
        self.epochs_seen_.append(len(net.history))
        self.batches_ = 0

    def on_batch_end(self, net, training, **kwargs):
        if training:
            self.batches_ += 1
            if len(net.history) == self.epoch and self.batches_ == self.batch:
                signal.raise_signal(signal.SIGINT)  # Python raises KeyboardInterrupt


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """Python's own Ctrl-C handler, whatever the launcher did: a shell running the suite
    in the background (``make test &``) starts it with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def proba(clf: FineTuneClassifier) -> np.ndarray:
    return clf.predict_proba(X_TOY)


def test_ctrl_c_mid_epoch_keeps_the_last_completed_epoch():
    # a constant schedule: a fit planned for 6 epochs then stopped after 2 is then the
    # same as one planned for 2 (other schedules plan their curve over max_epochs)
    clf = toy(max_epochs=6, batch_size=8, schedule="constant",
              callbacks=[CtrlC(epoch=3, batch=2)])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_TOY, Y_TOY)
    assert clf.interrupted_ and clf.best_epoch_ == 2 and clf.n_epochs_ == 3
    # usable, and exactly the model of a fit that stopped after epoch 2 (weights of the
    # half-trained third epoch are discarded)
    reference = toy(max_epochs=2, batch_size=8, schedule="constant").fit(X_TOY, Y_TOY)
    assert np.array_equal(proba(clf), proba(reference))
    assert clf.predict(X_TOY).shape == (len(X_TOY),)


def test_ctrl_c_with_validation_keeps_the_best_epoch():
    # lr=1: a validation loss that goes up and down, so the best epoch is not the last
    params = dict(max_epochs=12, batch_size=6, validation_fraction=0.25, patience=12, lr=1.0,
                  schedule="constant")
    clf = toy(**params, callbacks=[CtrlC(epoch=10, batch=1)])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_TOY, Y_TOY)
    losses = clf.net_.history[:-1, "valid_loss"]  # epochs 1..9 completed
    assert len(losses) == 9
    assert clf.best_epoch_ == int(np.argmin(losses)) + 1 < 9
    reference = toy(**{**params, "max_epochs": clf.best_epoch_}).fit(X_TOY, Y_TOY)
    assert np.array_equal(proba(clf), proba(reference))


def test_ctrl_c_in_the_first_epoch_leaves_a_previous_fit_untouched():
    fresh = toy(callbacks=[CtrlC(epoch=1)])
    with pytest.raises(KeyboardInterrupt):
        fresh.fit(X_TOY, Y_TOY)
    with pytest.raises(NotFittedError):
        fresh.predict(X_TOY)

    clf = toy(max_epochs=2).fit(X_TOY, Y_TOY)
    before = proba(clf)
    clf.set_params(callbacks=[CtrlC(epoch=1)])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_TOY[:12], np.array(["a", "b"] * 6))
    assert list(clf.classes_) == ["cat", "dog", "emu"]  # nothing half-replaced
    assert np.array_equal(proba(clf), before)


def test_ctrl_c_stops_a_grid_search_instead_of_moving_to_the_next_fit():
    starts = []

    class Count(Callback):
        def on_train_begin(self, net, **kwargs):
            starts.append(1)

    search = GridSearchCV(toy(callbacks=[Count(), CtrlC(epoch=2)]),
                          {"lr": [0.01, 0.1]}, cv=2, n_jobs=1)
    with pytest.raises(KeyboardInterrupt):
        search.fit(X_TOY, Y_TOY)
    assert len(starts) == 1


@pytest.mark.parametrize("params", [
    dict(unfreeze=1, freeze_epochs=2),  # interrupted after the phase switch
    dict(unfreeze="all", freeze_epochs=1, validation_fraction=0.25, patience=10),
])
def test_checkpoint_resume_gives_the_uninterrupted_model(tmp_path, params):
    params = dict(max_epochs=5, batch_size=8, optimizer="adamw", **params)
    uninterrupted = toy(**params).fit(X_TOY, Y_TOY)

    stopper = CtrlC(epoch=4, batch=2)
    clf = toy(**params, checkpoint=tmp_path, callbacks=[stopper])
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_TOY, Y_TOY)
    assert len(list(tmp_path.glob("*.ckpt"))) == 1

    resumed = CtrlC(epoch=99)  # never fires; records the epochs trained
    clf.set_params(callbacks=[resumed])
    clf.fit(X_TOY, Y_TOY)
    assert resumed.epochs_seen_ == [4, 5]  # only the missing epochs ran
    assert clf.n_epochs_ == 5 and not clf.interrupted_
    assert np.array_equal(proba(clf), proba(uninterrupted))
    assert clf.best_epoch_ == uninterrupted.best_epoch_


def test_finished_checkpoint_returns_at_once_and_more_epochs_continue(tmp_path):
    first = toy(max_epochs=3, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    spy = CtrlC(epoch=99)
    again = toy(max_epochs=3, checkpoint=tmp_path, callbacks=[spy]).fit(X_TOY, Y_TOY)
    assert spy.epochs_seen_ == []
    assert np.array_equal(proba(again), proba(first))

    # with a constant schedule, continuing is the same as having planned more epochs
    constant = dict(schedule="constant", checkpoint=tmp_path / "constant")
    toy(max_epochs=3, **constant).fit(X_TOY, Y_TOY)
    longer = toy(max_epochs=5, callbacks=[spy], **constant).fit(X_TOY, Y_TOY)
    assert spy.epochs_seen_ == [4, 5]
    reference = toy(max_epochs=5, schedule="constant").fit(X_TOY, Y_TOY)
    assert np.array_equal(proba(longer), proba(reference))


def test_each_fit_has_its_own_checkpoint(tmp_path):
    toy(max_epochs=1, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    toy(max_epochs=1, checkpoint=tmp_path, lr=0.02).fit(X_TOY, Y_TOY)  # other parameters
    toy(max_epochs=1, checkpoint=tmp_path).fit(X_TOY[:12], Y_TOY[:12])  # other data
    assert len(list(tmp_path.glob("*.ckpt"))) == 3


def test_edited_image_file_is_a_new_fit(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i, arr in enumerate(X_TOY[:9]):
        paths.append(folder / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    ckpt = tmp_path / "ckpt"
    toy(max_epochs=1, checkpoint=ckpt).fit(paths, Y_TOY[:9])
    Image.fromarray(255 - X_TOY[0]).save(paths[0])
    os.utime(paths[0], ns=(time.time_ns() + 10**9,) * 2)
    toy(max_epochs=1, checkpoint=ckpt).fit(paths, Y_TOY[:9])
    assert len(list(ckpt.glob("*.ckpt"))) == 2


def test_unreadable_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    toy(max_epochs=1, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    (path,) = tmp_path.glob("*.ckpt")
    path.write_bytes(path.read_bytes()[:200])  # truncated by a crash of another tool
    with pytest.raises(ValueError, match=rf"checkpoint {path}.*cannot be read.*delete it"):
        toy(max_epochs=1, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    torch.save({"format": 1, "meta": {"fingerprint": "other"}}, path)
    with pytest.raises(ValueError, match="written by another fit"):
        toy(max_epochs=1, checkpoint=tmp_path).fit(X_TOY, Y_TOY)


def test_checkpoint_is_never_half_written(tmp_path, monkeypatch):
    """A crash while saving leaves the previous epoch's checkpoint whole."""
    real_save = torch.save
    saves = []

    def failing_save(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 3:
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        toy(max_epochs=5, checkpoint=tmp_path).fit(X_TOY, Y_TOY)
    (path,) = tmp_path.glob("*")  # no temporary file left behind
    monkeypatch.setattr(torch, "save", real_save)
    meta = {"fingerprint": torch.load(path, weights_only=True)["meta"]["fingerprint"]}
    assert len(read_checkpoint(path, meta)["history"]) == 2


def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for label, shade in (("dark", 40), ("light", 210)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            arr = np.clip(rng.normal(shade, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.png")


def test_cli_ctrl_c_then_the_same_command_resumes(tmp_path):
    """A real SIGINT from outside, as a terminal sends it, and a resumed run."""
    _write_folder(tmp_path / "data")
    ckpt = tmp_path / "ckpt"
    (tmp_path / "slow_net.py").write_text(
        "import time\n"
        "from torch import nn\n"
        "class Sleep(nn.Module):\n"  # slow enough for the signal to land mid-epoch
        "    def forward(self, x):\n"
        "        time.sleep(0.15)\n"
        "        return x\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), Sleep(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))\n"
    )
    command = [sys.executable, "-m", "sktransfer", "fit", str(tmp_path / "data"), "-o",
               str(tmp_path / "m.joblib"), "--strategy", "finetune", "--model",
               "slow_net:make", "--weights", "none", "--image-size", "16",
               "--epochs", "40", "--freeze-epochs", "1", "--batch-size", "4",
               "--checkpoint", str(ckpt), "-q"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    deadline = time.monotonic() + 120
    while not list(ckpt.glob("*.ckpt")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # into the next epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"interrupted; run the same command again to resume from {ckpt}" in err
    assert not (tmp_path / "m.joblib").exists()
    (path,) = ckpt.glob("*.ckpt")
    done = len(torch.load(path, weights_only=True)["history"])
    assert 1 <= done < 40

    finish = [c if c != "40" else str(done + 1) for c in command]  # one more epoch
    result = subprocess.run(finish, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m.joblib").exists()
    assert len(torch.load(path, weights_only=True)["history"]) == done + 1
