"""Scale-out on Dask: lazy embedding and prediction of Dask collections on a two-process
LocalCluster (loopback only), the network loaded once per worker, a lost worker, a shared
cache, the command line's --dask, and searches under joblib's dask backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from distributed import Client, LocalCluster, get_task_stream
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sktransfer import (
    FineTuneClassifier,
    FineTuneRegressor,
    ImageInputError,
    PretrainedFeatureExtractor,
    _dask,
    _dask_worker,
)
from sktransfer.cli import main
from sktransfer.dask import ParallelPostFit, _environment_kept, connect

from ._helpers import SlowCountingCNN, default_sigint, has_cuda, tiny_cnn

# one pytest-xdist worker runs this module: one LocalCluster, not one per worker
pytestmark = pytest.mark.xdist_group("dask")

ROOT = Path(__file__).parents[1]
RNG = np.random.default_rng(3)
X = RNG.integers(0, 256, size=(23, 24, 24, 3), dtype=np.uint8)
Y = np.array(["dark", "bright"] * 11 + ["dark"])
X[Y == "dark"] //= 3


def extractor(model=None, **params) -> PretrainedFeatureExtractor:
    defaults = dict(weights=None, image_size=16, precision="float32")
    return PretrainedFeatureExtractor(tiny_cnn() if model is None else model,
                                      **{**defaults, **params})


def finetuner(cls=FineTuneClassifier, **params):
    defaults = dict(weights=None, image_size=16, max_epochs=2, batch_size=8, lr=1e-2,
                    precision="float32", random_state=0, n_threads=1)
    return cls(tiny_cnn(), **{**defaults, **params})


def _per_worker(client: Client, fn) -> dict:
    return client.run(fn)


def _seen() -> int:
    from tests._helpers import SlowCountingCNN

    return SlowCountingCNN.seen


@pytest.fixture(scope="module")
def client():
    # the nannies write OMP_NUM_THREADS=1... into this process's environment when they
    # start a worker (again after the kill test), which later subprocesses would inherit
    with _environment_kept():
        with _environment_kept():
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
        with Client(cluster) as c:
            c.run(lambda: __import__("sktransfer._extractor"))  # import torch per worker
            yield c
        cluster.close()


@pytest.fixture
def paths(tmp_path: Path) -> list[str]:
    out = []
    for i, arr in enumerate(X[:11]):
        path = tmp_path / f"img{i:02d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(arr).save(path)
        out.append(str(path))
    return out


# --------------------------------------------------------------------------- lazy calls
def test_dask_array_embeddings_equal_local_in_order(client):
    ext = extractor().fit()
    images = da.from_array(X, chunks=(5, 12, 24, 3))  # split inside images too
    lazy = ext.transform(images)
    assert isinstance(lazy, da.Array) and lazy.dtype == np.float32
    assert lazy.chunks == ((5, 5, 5, 5, 3), (ext.n_features_out_,))
    with get_task_stream(client) as stream:
        out = lazy.compute()
    ran = [t for t in stream.data if "run_partition" in str(t["key"])]
    assert len(ran) == 5  # one task per partition, on the cluster's workers
    assert {t["worker"] for t in ran} <= set(client.scheduler_info()["workers"])
    assert np.abs(out - ext.transform(X)).max() < 1e-5


@pytest.mark.parametrize("kind", ["series", "dataframe", "bag"])
def test_collections_of_paths_embed_in_input_order(client, paths, kind):
    ext = extractor().fit()
    collection = {
        "series": lambda: dd.from_pandas(pd.Series(paths), npartitions=3),
        "dataframe": lambda: dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=3),
        "bag": lambda: db.from_sequence(paths, npartitions=4),
    }[kind]()
    lazy = ext.transform(collection)
    assert lazy.shape[1] == ext.n_features_out_ and np.isnan(lazy.shape[0])  # unknown rows
    np.testing.assert_allclose(lazy.compute(), ext.transform(paths), rtol=0, atol=1e-5)


def test_empty_partitions_give_no_rows(client, paths):
    ext = extractor().fit()
    series = dd.from_pandas(pd.Series(paths), npartitions=4)
    emptied = series[series > paths[2]]  # every path of the first partition goes
    assert emptied.map_partitions(len).compute().tolist()[0] == 0
    expected = ext.transform([p for p in paths if p > paths[2]])
    np.testing.assert_allclose(ext.transform(emptied).compute(), expected, atol=1e-5)


def test_network_is_loaded_once_per_worker(client):
    ext = extractor(tiny_cnn(seed=11)).fit()  # new weights: a token no worker has seen
    token, _ = _dask.shipped(ext)
    ext.transform(da.from_array(X, chunks=2)).compute()  # 12 partitions
    ext.transform(da.from_array(X[:9], chunks=3)).compute()  # shipped again, same bytes
    loads = _per_worker(client, lambda: _dask_worker.LOADS.get(token, 0))
    assert sorted(loads.values()) == [1, 1], loads


def test_worker_calls_use_the_workers_threads_then_restore(monkeypatch):
    monkeypatch.setattr(_dask_worker, "_worker_threads", lambda: 3)
    before = torch.get_num_threads()
    ext = extractor(verbose=True).fit()
    seen = []
    token = "threads-test"
    out = _dask_worker.run_partition(token, __import__("pickle").dumps(ext), X[:4], "transform", 0)
    assert len(out) == 4
    copy = _dask_worker._MEMO[token]
    copy.backbone_.body.register_forward_pre_hook(
        lambda *_: seen.append(torch.get_num_threads()))
    _dask_worker.run_partition(token, None, X[:4], "transform", 1)
    assert seen == [3]  # intra-op threads: the worker's
    assert torch.get_num_threads() == before  # restored after the call
    assert copy.n_jobs == 3 and copy.verbose is False  # decoding threads; quiet
    assert ext.n_jobs is None and ext.verbose is True  # the client's estimator is not
    _dask_worker.forget(token)


def test_finetuned_predictions_and_pipelines_are_lazy(client, paths):
    clf = finetuner().fit(X, Y)
    images = da.from_array(X, chunks=6)
    labels = clf.predict(images)
    assert isinstance(labels, da.Array) and labels.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(labels.compute(), clf.predict(X))
    np.testing.assert_allclose(clf.predict_proba(images).compute(), clf.predict_proba(X),
                               atol=1e-6)
    reg = finetuner(FineTuneRegressor, max_epochs=1).fit(X, X.mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(reg.predict(images).compute(), reg.predict(X), atol=1e-6)

    pipe = make_pipeline(extractor(), LogisticRegression(max_iter=500)).fit(X[:11],
                                                                           Y[:11])
    series = dd.from_pandas(pd.Series(paths), npartitions=3)
    wrapped = ParallelPostFit(pipe)
    proba = wrapped.predict_proba(series)
    assert isinstance(proba, da.Array) and proba.shape[1] == 2
    np.testing.assert_allclose(proba.compute(), pipe.predict_proba(paths), atol=1e-6)
    np.testing.assert_array_equal(wrapped.predict(series).compute(), pipe.predict(paths))
    np.testing.assert_array_equal(wrapped.predict(paths), pipe.predict(paths))  # in memory


def test_bad_image_is_named_on_the_client(client, paths, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    bag = db.from_sequence([*paths[:6], str(broken), *paths[6:]], npartitions=3)
    with pytest.raises(ImageInputError, match=r"partition 1 .*broken\.jpg"):
        extractor().fit().transform(bag).compute()


def test_inputs_that_hold_no_images_are_refused_before_any_work():
    ext = extractor().fit()
    with pytest.raises(ImageInputError, match="dask array of shape"):
        ext.transform(da.zeros((4, 5), chunks=2))
    with pytest.raises(ImageInputError, match="2 columns"):
        ext.transform(dd.from_pandas(pd.DataFrame({"a": ["x"], "b": ["y"]}),
                                     npartitions=1))
    with pytest.raises(TypeError, match="in-memory"):
        ParallelPostFit(make_pipeline(extractor(), LogisticRegression())).fit(
            da.from_array(X, chunks=4), Y)


# --------------------------------------------------------------------------- faults
def test_a_worker_killed_mid_transform_loses_no_row(client):
    ext = extractor(SlowCountingCNN(delay=0.3), batch_size=2).fit()
    expected = ext.transform(X)
    future = client.compute(ext.transform(da.from_array(X, chunks=2)))  # 12 tasks, >=0.3 s
    deadline = time.monotonic() + 60
    busy = []
    while not busy and time.monotonic() < deadline:
        busy = [w for w, tasks in client.processing().items()
                if any("run_partition" in str(key) for key in tasks)]
        time.sleep(0.05)
    assert busy and not future.done()
    victim = busy[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)  # the nanny starts a fresh worker; Dask reschedules
    out = future.result(timeout=120)
    assert victim not in client.scheduler_info()["workers"]  # it really died
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)  # every row, once, in order
    client.wait_for_workers(2, timeout=60)


def test_shared_cache_concurrent_writers_then_rerun_embeds_only_missing(client, paths,
                                                                       tmp_path):
    cache = tmp_path / "cache"
    ext = extractor(SlowCountingCNN(seed=5), cache=cache).fit()
    # every image three times over six partitions: both workers write the same entries
    with get_task_stream(client) as stream:
        ext.transform(db.from_sequence(paths * 3, npartitions=6)).compute()
    assert len({t["worker"] for t in stream.data if "run_partition" in str(t["key"])}) == 2
    entries = sorted(cache.rglob("*.emb"))
    assert len(entries) == len(paths)  # one entry per image, none duplicated
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    local = extractor(SlowCountingCNN(seed=5)).fit().transform(paths)
    cached = extractor(SlowCountingCNN(seed=5), cache=cache).fit()
    np.testing.assert_allclose(cached.transform(paths), local, atol=1e-6)  # none corrupt
    assert cached.transform_cost_.n_images == 0  # all served from the workers' entries

    for entry in entries[:4]:  # a crash before these were written
        entry.unlink()
    before = sum(_per_worker(client, _seen).values())
    out = ext.transform(db.from_sequence(paths, npartitions=3)).compute()
    assert sum(_per_worker(client, _seen).values()) - before == 4
    np.testing.assert_allclose(out, local, atol=1e-6)


# --------------------------------------------------------------------------- command line
def _folder(root: Path, n: int = 24) -> Path:
    for i in range(n):
        label = "dark" if i % 2 else "bright"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(X[i % len(X)] // (1 + i % 3)).save(root / label / f"{i:02d}.png")
    return root


def test_cli_dask_interrupted_then_resumed(client, tmp_path, capsys):
    # Each worker embeds one part (3 images), then waits at a gate until the Ctrl-C has
    # been sent: the job is interrupted mid-way by construction, not by timing (a clean-
    # clone run on a loaded machine once finished the whole job before the signal landed)
    folder = _folder(tmp_path / "images", n=24)
    out = tmp_path / "emb.parquet"
    gate = tmp_path / "gate"
    args = ["extract", str(folder), "-o", str(out), "--model", "tests._helpers:slow_cnn",
            "--image-size", "16", "--batch-size", "2", "--partition-size", "3", "-q"]
    env = {**os.environ, "SKTRANSFER_TEST_GATE": str(gate), "SKTRANSFER_TEST_GATE_AFTER": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "sktransfer", *args, "--dask", "local:2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    try:
        try:
            deadline = time.monotonic() + 180
            while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)  # the CLI handles the Ctrl-C before any worker may go on
        finally:
            gate.touch()  # the waiting workers finish, so the cluster can close
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "resume from the parts in" in err
    written = len(list(out.glob("part-*.parquet")))
    assert 1 <= written <= 2  # one part per worker passed the gate; 8 parts in all

    address = client.scheduler.address
    assert main([*args, "--dask", address]) == 0
    assert f"{written} were already written" in capsys.readouterr().out
    assert main(["extract", str(folder), "-o", str(tmp_path / "single.parquet"), "--model",
                 "tests._helpers:slow_cnn", "--image-size", "16", "-q"]) == 0
    single = pd.read_parquet(tmp_path / "single.parquet")
    distributed = pd.read_parquet(out)
    assert len(list(out.glob("part-*.parquet"))) == 8
    assert distributed["path"].tolist() == single["path"].tolist()
    np.testing.assert_allclose(distributed.iloc[:, 2:].to_numpy(),
                               single.iloc[:, 2:].to_numpy(), atol=1e-5)

    assert args[6:8] == ["--image-size", "16"]
    assert main([*args[:7], "20", *args[8:], "--dask", address]) == 2
    assert "holds an extraction with other settings (network" in capsys.readouterr().err


def test_cli_dask_names_a_bad_image(client, tmp_path, capsys):
    folder = _folder(tmp_path / "images", n=6)
    (folder / "dark" / "zz_broken.png").write_bytes(b"\x89PNG but not really")
    assert main(["extract", str(folder), "-o", str(tmp_path / "e.parquet"), "--model",
                 "tests._helpers:tiny_cnn", "--image-size", "16", "-q", "--partition-size",
                 "2", "--dask", client.scheduler.address]) == 2
    err = capsys.readouterr().err
    assert "partition 3 of the Dask input" in err and "zz_broken.png" in err, err


def test_cli_dask_option_errors(tmp_path, capsys):
    folder = _folder(tmp_path / "images", n=2)
    tiny = ["--model", "tests._helpers:tiny_cnn", "--image-size", "16", "-q"]
    assert main(["extract", str(folder), "-o", str(tmp_path / "e.npy"), *tiny,
                 "--dask", "local:2"]) == 2
    assert "partitioned parquet" in capsys.readouterr().err
    assert main(["extract", str(folder), "-o", str(tmp_path / "e.parquet"), *tiny,
                 "--dask", "local:zero"]) == 2
    assert "local:N" in capsys.readouterr().err
    with pytest.raises(OSError, match="cannot reach"):
        connect("tcp://127.0.0.1:9", timeout=1)


def test_connect_local_leaves_the_environment_as_it_was():
    saved = dict(os.environ)
    with _environment_kept(), connect("local:1") as local:
        assert dict(os.environ) == saved  # Dask's nanny wrote OMP_NUM_THREADS=1 here
        workers = local.run(lambda: os.environ.get("OMP_NUM_THREADS"))
        assert list(workers.values()) == ["1"]  # ...for its workers only


# --------------------------------------------------------------------------- searches
def test_searches_under_the_dask_joblib_backend_match_n_jobs_1(client, tmp_path):
    grid = {"unfreeze": [0, "all"]}
    search = dict(cv=2, scoring="neg_log_loss")
    serial = GridSearchCV(finetuner(), grid, n_jobs=1, **search).fit(X, Y)
    with joblib.parallel_config(backend="dask"), get_task_stream(client) as stream:
        spread = GridSearchCV(finetuner(), grid, n_jobs=-1, **search).fit(X, Y)
    assert stream.data  # the fits ran on the workers
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(spread.cv_results_[key], serial.cv_results_[key])
    assert spread.best_params_ == serial.best_params_

    def frozen():
        return make_pipeline(extractor(cache=tmp_path / "cache"),
                             LogisticRegression(max_iter=500))

    grid = {"logisticregression__C": [0.01, 1.0]}
    serial = GridSearchCV(frozen(), grid, cv=2, n_jobs=1).fit(X, Y)
    with joblib.parallel_config(backend="dask"):
        spread = GridSearchCV(frozen(), grid, cv=2, n_jobs=-1).fit(X, Y)
    np.testing.assert_allclose(spread.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"])
    assert spread.best_params_ == serial.best_params_


def test_random_features_with_an_int_seed_agree_serially_on_dask_and_in_another_process(
        client, tmp_path):
    """Random ResNet features (weights=None), the baseline the scaling docs use: with
    random_state=0 the network is the same whatever torch's global random state, on the
    dask joblib backend's workers and in a fresh interpreter; None draws a new one."""
    def random_features(**params):
        return PretrainedFeatureExtractor("resnet18", weights=None, image_size=24,
                                          precision="float32", **params)

    def search():
        pipe = make_pipeline(random_features(random_state=0), LogisticRegression(max_iter=500))
        return GridSearchCV(pipe, {"logisticregression__C": [0.01, 1.0]}, cv=2, n_jobs=-1,
                            scoring="neg_log_loss")

    torch.manual_seed(1)
    before = torch.get_rng_state()
    serial = search().set_params(n_jobs=1).fit(X, Y)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG left alone
    torch.manual_seed(2)  # another global state: must not matter
    with joblib.parallel_config(backend="dask"), get_task_stream(client) as stream:
        spread = search().fit(X, Y)
    assert stream.data  # the fits ran on the workers
    # workers compute with one thread, this process with two: sums in another order
    np.testing.assert_allclose(spread.cv_results_["mean_test_score"],
                               serial.cv_results_["mean_test_score"], rtol=1e-5)
    assert spread.best_params_ == serial.best_params_

    here = random_features(random_state=0).fit().transform(X)
    np.save(tmp_path / "X.npy", X)
    code = ("import sys, numpy as np\n"
            "from sktransfer import PretrainedFeatureExtractor as P\n"
            "ext = P('resnet18', weights=None, image_size=24, precision='float32',"
            " random_state=0).fit()\n"
            "np.save(sys.argv[2], ext.transform(np.load(sys.argv[1])))\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "X.npy"),
                             str(tmp_path / "out.npy")], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), here, rtol=1e-5, atol=1e-6)
    other = random_features(random_state=1).fit().transform(X)
    fresh = random_features().fit().transform(X)  # None: a new network each fit
    assert np.abs(other - here).max() > 1e-2 and np.abs(fresh - here).max() > 1e-2


def test_single_machine_path_never_imports_dask(tmp_path):
    code = ("import sys, numpy as np\n"
            "from sktransfer import PretrainedFeatureExtractor\n"
            "from tests._helpers import tiny_cnn\n"
            "x = np.zeros((2, 16, 16, 3), np.uint8)\n"
            "PretrainedFeatureExtractor(tiny_cnn(), weights=None, image_size=16).fit()"
            ".transform(x)\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', "
            "'distributed')], 'dask was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda(), reason="needs a CUDA device")
def test_gpu_worker_embeds_on_its_gpu():
    ext = extractor(device="cuda").fit()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        on_gpu = ext.transform(da.from_array(X, chunks=8)).compute()
        used = Client.current().run(lambda: torch.cuda.max_memory_allocated())
    assert max(used.values()) > 0  # the network ran on the worker's GPU
    np.testing.assert_allclose(on_gpu, ext.transform(X), atol=1e-4)
