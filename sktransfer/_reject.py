""""None of these": how a fine-tuned classifier recognises images unlike its training set.

After training, the fitted network embeds its training images once (the head's input, no
augmentation); a score of typicality is fitted on them (:class:`~sktransfer.NoveltyDetector`
on the embeddings, class-conditional, or the energy of the logits) with a threshold that
keeps ``keep_rate`` of the training images. ``predict`` then returns ``reject_label`` for
the images below it.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import logsumexp

NOVELTY_SCORES = ("mahalanobis", "knn", "energy")


class Rejector:
    """A fitted typicality score and its threshold (``decision >= 0``: typical).

    ``method`` is one of :data:`NOVELTY_SCORES`: the embedding detectors score the head's
    inputs, ``"energy"`` scores the logits (``logsumexp``; Liu et al. 2020).
    """

    def __init__(self, method: str, detector=None, offset: float = 0.0,
                 keep_rate: float | None = None):
        self.method, self.detector, self.offset = method, detector, float(offset)
        self.keep_rate = keep_rate  # what it was fitted with (None: files from before)

    @classmethod
    def fit(cls, method: str, keep_rate: float, features: np.ndarray, logits: np.ndarray,
            labels: np.ndarray) -> Rejector:
        if method == "energy":
            scores = energy(logits)
            return cls(method, offset=np.quantile(scores, 1 - keep_rate, method="lower"),
                       keep_rate=keep_rate)
        from ._novelty import NoveltyDetector

        detector = NoveltyDetector(method, keep_rate=keep_rate).fit(features, labels)
        return cls(method, detector, keep_rate=keep_rate)

    def decision(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Typicality minus the threshold: negative for images to reject."""
        if self.detector is None:
            return energy(logits) - self.offset
        return self.detector.decision_function(features)

    # pickle-free exchange: JSON values and named arrays
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.detector is None:
            return {"method": self.method, "offset": self.offset,
                    "keep_rate": self.keep_rate}, {}
        values, arrays = self.detector._fitted_state()
        return {"method": self.method, "params": self.detector.get_params(),
                "detector": values, "keep_rate": self.keep_rate}, arrays

    @classmethod
    def from_state(cls, values: dict, arrays: dict[str, np.ndarray]) -> Rejector:
        if "detector" not in values:
            return cls(values["method"], offset=values["offset"],
                       keep_rate=values.get("keep_rate"))
        from ._novelty import NoveltyDetector

        detector = NoveltyDetector._from_fitted_state(values["params"], values["detector"],
                                                      arrays)
        return cls(values["method"], detector, keep_rate=values.get("keep_rate"))


def energy(logits: np.ndarray) -> np.ndarray:
    """``logsumexp`` of the logits (views averaged first): higher means more typical."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 3:
        z = z.mean(axis=1)
    return logsumexp(z, axis=-1)


def outputs_and_features(net, dataset, features: bool = True
                         ) -> tuple[torch.Tensor, np.ndarray | None]:
    """One pass of the fitted skorch ``net`` over ``dataset``: its raw outputs (as
    ``net.forward`` returns them, on the CPU) and, with ``features``, the head's inputs,
    averaged over test-time views, as a float32 array (else None)."""
    module = net.module_
    if not features:
        return net.forward(dataset, training=False, device="cpu").float(), None
    captured: list[torch.Tensor] = []
    handle = module.head.register_forward_hook(
        lambda _, inputs, __: captured.append(inputs[0].detach().float().cpu()))
    try:
        outputs = net.forward(dataset, training=False, device="cpu")
    finally:
        handle.remove()
    inputs = torch.cat(captured) if captured else torch.empty(0, module.head.in_features)
    if outputs.ndim == 3:  # (N, V, C): features arrive flattened as (N * V, F)
        inputs = inputs.unflatten(0, (outputs.shape[0], outputs.shape[1])).mean(1)
    return outputs.float(), inputs.numpy()


def label_array(classes: np.ndarray, reject_label: object) -> np.ndarray:
    """``classes`` followed by ``reject_label`` (checked by :func:`check_reject_label`),
    in a dtype that holds both unchanged."""
    if classes.dtype.kind in "iu":  # an integral float (-1.0) stays an integer label
        return np.concatenate([classes, np.asarray([int(reject_label)])])
    if classes.dtype.kind in "fU":
        return np.concatenate([classes, np.asarray([reject_label])])
    out = np.empty(len(classes) + 1, dtype=object)
    out[:-1], out[-1] = list(classes), reject_label
    return out


def check_reject_label(reject_label: object, classes: np.ndarray) -> None:
    """The reject label must not be a class of ``y``, and must be of the classes' kind
    (a number for numeric labels, a string for string labels), so that ``predict``'s
    output stays one kind of label that scikit-learn's metrics accept."""
    if reject_label is None:
        return
    values = classes.tolist()
    if classes.dtype.kind == "b":
        raise ValueError(f"reject_label={reject_label!r} with boolean labels: predict "
                         "would mix booleans with the reject label, which scikit-learn's "
                         "metrics refuse; pass y.astype(int) with reject_label=-1")
    numeric = classes.dtype.kind in "iuf"
    text = classes.dtype.kind == "U" or all(isinstance(v, str) for v in values)
    is_number = isinstance(reject_label, (int, float, np.integer, np.floating)) and \
        not isinstance(reject_label, (bool, np.bool_))
    if (numeric and not is_number) or (text and not isinstance(reject_label, str)):
        kind = "numbers" if numeric else "strings"
        raise ValueError(f"reject_label={reject_label!r} is not of the kind of y's labels "
                         f"({kind}, e.g. {values[0]!r}); predict would mix label types, "
                         "which scikit-learn's metrics refuse. Use e.g. "
                         f"{-1 if numeric else repr('unknown')}")
    if classes.dtype.kind in "iu" and float(reject_label) != int(reject_label):
        raise ValueError(f"reject_label={reject_label!r} is not an integer but y's labels "
                         f"are (e.g. {values[0]!r}); use e.g. -1")
    if any(_same(reject_label, c) for c in values):
        raise ValueError(f"reject_label={reject_label!r} is one of the classes of y "
                         f"{values}; choose a label y does not use, e.g. "
                         f"{-1 if numeric else repr('unknown')}")


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
