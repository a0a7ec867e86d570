"""Same random_state, same predictions: across fits, a joblib round trip and n_jobs."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sktransfer import FineTuneClassifier

from ._helpers import offline_env, run_in_fresh_process

RNG = np.random.default_rng(7)
X = RNG.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
Y = np.array(["a", "b"] * 8)
X[Y == "a"] //= 2


def resnet(**params) -> FineTuneClassifier:
    """A real-sized architecture (random init) whose training sums depend on threads."""
    defaults = dict(weights=None, image_size=32, resize_size=32, unfreeze="all",
                    freeze_epochs=0, max_epochs=2, batch_size=8, lr=1e-3, random_state=0)
    return FineTuneClassifier("resnet18", **{**defaults, **params})


def test_two_fits_and_a_joblib_round_trip_agree(tmp_path):
    first = resnet().fit(X, Y)
    expected = first.predict_proba(X)
    np.testing.assert_array_equal(resnet().fit(X, Y).predict_proba(X), expected)
    path = tmp_path / "clf.joblib"
    joblib.dump(first, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(X), expected)
    fresh = run_in_fresh_process(path, X, tmp_path, offline_env(tmp_path))
    np.testing.assert_array_equal(fresh, expected)


@pytest.mark.parametrize("n_jobs", [2, -1])
def test_grid_search_is_identical_across_n_jobs(n_jobs):
    grid = {"lr": [1e-3, 1e-2]}
    # log loss: a continuous score, so a difference in any fold's model shows (without
    # n_threads, workers with 1 thread and a 2-thread process differed by ~2e-6 here)
    search = dict(cv=2, scoring="neg_log_loss")
    serial = GridSearchCV(resnet(n_threads=1), grid, n_jobs=1, **search).fit(X, Y)
    parallel = GridSearchCV(resnet(n_threads=1), grid, n_jobs=n_jobs, **search).fit(X, Y)
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(parallel.cv_results_[key], serial.cv_results_[key])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(parallel.predict_proba(X), serial.predict_proba(X))


def test_fit_and_predict_run_with_n_threads_then_restore():
    import torch
    from skorch.callbacks import Callback

    seen = []

    class Threads(Callback):
        def on_batch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    wanted = before + 1  # differs from the caller's setting whatever the machine
    clf = resnet(n_threads=wanted, max_epochs=1, callbacks=[Threads()]).fit(X, Y)
    assert seen and set(seen) == {wanted}
    assert torch.get_num_threads() == before
    seen.clear()
    clf.net_.module_.register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))
    clf.predict_proba(X[:2])
    assert seen and set(seen) == {wanted} and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="'n_threads' parameter .* or None"):
        resnet(n_threads=0).fit(X, Y)
