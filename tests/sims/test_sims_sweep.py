"""The sweep: resume after an interruption without recomputing, a corrupt cache file, and the
joblib backends (loky processes and dask on a small local cluster) giving the same numbers."""

import numpy as np
import pytest

from sims.config import EvalConfig, LearnerConfig, MixtureConfig, SearchConfig, Setting
from sims.sweep import cache_path, run_sweep


def _settings():
    out = []
    for loss in ("additive", "temperature"):
        for ratio in (0.5, 2.0):
            mix = MixtureConfig(sigmas=(1.0, ratio), n_per_class=(6, 6), d=1)
            out.append(
                Setting(mix, LearnerConfig(loss=loss), SearchConfig(grid_size=5), EvalConfig(), n_seeds=2)
            )
    return out


class Stop(Exception):
    pass


def _same(a, b):
    assert [r.setting.key for r in a.results] == [r.setting.key for r in b.results]
    for x, y in zip(a.results, b.results, strict=True):
        np.testing.assert_array_equal(x.errors, y.errors)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_sweep(_settings(), tmp_path_factory.mktemp("ref"), backend="sequential", progress=False)


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, reference):
    settings = _settings()
    seen = []

    def interrupt(res):
        seen.append(res.setting.key)
        if len(seen) == 2:
            raise Stop  # as if the machine went down after two settings were written

    with pytest.raises(Stop):
        run_sweep(settings, tmp_path, backend="sequential", progress=False, on_result=interrupt)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        cache_path(tmp_path, s).name for s in settings if s.key in seen
    )
    again = run_sweep(settings, tmp_path, backend="sequential", progress=False)
    assert sorted(again.reused) == sorted(seen)
    assert sorted(again.computed) == sorted(s.key for s in settings if s.key not in seen)
    _same(again, reference)
    third = run_sweep(settings, tmp_path, backend="sequential", progress=False)
    assert third.computed == [] and len(third.reused) == len(settings)  # nothing recomputed


def test_corrupt_cache_file_is_recomputed(tmp_path, reference):
    settings = _settings()[:1]
    run_sweep(settings, tmp_path, backend="sequential", progress=False)
    cache_path(tmp_path, settings[0]).write_bytes(b"half a file")
    again = run_sweep(settings, tmp_path, backend="sequential", progress=False)
    assert again.computed == [settings[0].key]
    np.testing.assert_array_equal(again.results[0].errors, reference.results[0].errors)


def test_loky_processes_give_the_same_numbers(tmp_path, reference):
    res = run_sweep(_settings(), tmp_path, n_jobs=2, backend="loky", progress=False)
    _same(res, reference)  # asserts equal errors, setting by setting
    assert len(res.computed) == len(_settings())


def test_dask_backend_on_a_local_cluster(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as c:
        with distributed.Client(c):
            res = run_sweep(_settings(), tmp_path, n_jobs=2, backend="dask", progress=False)
    _same(res, reference)
    assert len(res.computed) == len(_settings())


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="^backend="):
        run_sweep(_settings(), tmp_path, backend="spark")
    with pytest.raises(ValueError, match="^n_jobs="):
        run_sweep(_settings(), tmp_path, n_jobs=0)
