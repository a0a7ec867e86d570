"""Resources are given back: gradients, optimizer state and GPU memory after fit/transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktransfer import FineTuneClassifier, PretrainedFeatureExtractor

from ._helpers import tiny_cnn

X = np.random.default_rng(0).integers(0, 256, size=(12, 16, 16, 3), dtype=np.uint8)
Y = ["a", "b", "c"] * 4


def _finetune(**params) -> FineTuneClassifier:
    return FineTuneClassifier(tiny_cnn(), image_size=16, resize_size=16, max_epochs=2,
                              unfreeze="all", freeze_epochs=1, random_state=0, **params)


def test_fit_keeps_no_gradients_or_optimizer_state():
    clf = _finetune().fit(X, Y)
    module = clf.net_.module_
    assert all(p.grad is None for p in module.parameters())
    assert not clf.net_.optimizer_.state  # AdamW moments: twice the model, not kept
    assert all(p.device.type == "cpu" for p in module.parameters())
    state = dict(clf.net_.callbacks_)["training_state"]
    assert state.best_state_ is None  # the best weights live in the module only


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_memory_is_released_after_fit_predict_and_transform():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base_allocated, base_reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    clf = _finetune(device="cuda").fit(X, Y)
    assert torch.cuda.memory_allocated() == base_allocated
    clf.predict_proba(X)
    assert torch.cuda.memory_allocated() == base_allocated
    ext = PretrainedFeatureExtractor(tiny_cnn(), image_size=16, resize_size=16,
                                     device="cuda").fit()
    ext.transform(X)
    assert torch.cuda.memory_allocated() == base_allocated
    assert torch.cuda.memory_reserved() <= base_reserved  # cached blocks handed back
