"""NoveltyDetector: flags embeddings unlike the training images (out-of-distribution
detection on the features of a pretrained network).

Two scores, both from the literature on detecting out-of-distribution inputs with a
network's features:

- ``"mahalanobis"`` (Lee et al. 2018, on L2-normalised embeddings as Mueller & Hein 2025
  advise): Gaussians with one shared covariance, one per class when labels are given (a
  single one otherwise); the score is minus the smallest Mahalanobis distance to a class
  mean. Embeddings have more dimensions (512-1280) than a user has images, so the
  covariance is shrunk towards a multiple of the identity with the Ledoit-Wolf
  coefficient, computed in the span of the training data (no ``n_features x n_features``
  matrix is formed or inverted).
- ``"knn"`` (Sun et al. 2022): minus the distance to the k-th nearest training embedding,
  all embeddings L2-normalised first.

numpy and scikit-learn only: importing this module does not import torch.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

#: The scores :class:`NoveltyDetector` computes.
METHODS = ("mahalanobis", "knn")
# Folds of the cross-fitting that gives the Mahalanobis score's held-out training scores.
_N_FOLDS = 10
# The isotropic variance is never below this share of the data's mean variance.
_VARIANCE_FLOOR = 1e-9
_CHUNK = 2048  # query rows per block of the k-NN distance computation
_STATE_FORMAT = 1


class _Numbers(Interval):
    """A numeric interval that refuses booleans (as ``sktransfer._validation.Numbers``,
    which this module does not import: that one loads torch)."""

    def is_satisfied_by(self, val: object) -> bool:
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


class NoveltyDetector(OutlierMixin, BaseEstimator):
    """Flag images unlike the training images, from their embeddings.

    Put it after :class:`~sktransfer.PretrainedFeatureExtractor` in a
    :class:`~sklearn.pipeline.Pipeline`: it learns what the embeddings of the training
    images look like, and scores how typical new embeddings are. ``predict`` returns 1
    for a typical image and -1 for a novel one (out of distribution: another kind of
    image, a corrupted one, noise).

    ``score_samples`` is higher for more typical embeddings; the threshold ``offset_`` is
    set on held-out scores of the training embeddings, so that about ``keep_rate`` of new
    images drawn like the training images are kept (``decision_function >= 0``).

    Parameters
    ----------
    method : {"mahalanobis", "knn"}, default="mahalanobis"
        The typicality score.

        - ``"mahalanobis"``: minus the Mahalanobis distance to the nearest class mean,
          under Gaussians sharing one covariance (Lee et al. 2018), fitted to the
          L2-normalised embeddings (Mueller & Hein 2025; on real embeddings it detected
          noise and corrupted images far better than the unnormalised distance). With
          labels ``y`` there is one Gaussian per class; without, a single one. The
          shared covariance is estimated on the class-centred embeddings and shrunk
          towards a multiple of the identity with the Ledoit-Wolf coefficient, so it is
          well conditioned with fewer images than features. Keeps the class means and
          a basis of the training embeddings' span. Without labels, images between
          well-separated kinds of training images may score as novel: normalised
          embeddings lie on a sphere, and the one Gaussian's mean inside it.
        - ``"knn"``: minus the Euclidean distance to the ``n_neighbors``-th nearest
          training embedding, all embeddings L2-normalised (Sun et al. 2022). Makes no
          assumption on the shape of the data; does not use ``y``; keeps the training
          embeddings (``n_samples x n_features`` floats).
    keep_rate : float, default=0.95
        The target share of training images kept (called typical): the threshold is the
        ``1 - keep_rate`` quantile of the training embeddings' held-out scores. Plays the
        role of scikit-learn's ``contamination = 1 - keep_rate``. Must be in (0, 1].
    n_neighbors : int, default=20
        For ``"knn"``: which nearest training embedding's distance is the score; lowered
        (with a warning) to the number of distinct training embeddings minus one when
        larger (``n_neighbors_``). 20 detected images unlike
        photos (noise, digits, shapes) best on a few hundred training images; 1 to 5
        separate images closer to the training images (other parts of the same photos)
        better. Unused by ``"mahalanobis"``.

    Attributes
    ----------
    offset_ : float
        The threshold: ``decision_function = score_samples - offset_``.
    training_scores_ : ndarray of shape (n_samples,)
        Held-out scores of the training embeddings, which set ``offset_``: for
        ``"mahalanobis"``, each embedding scored by a model fitted without it (10-fold
        cross-fitting, stratified by class); for ``"knn"``, leave-one-out (an embedding,
        and any exact duplicate of it, does not count as its own neighbour).
        ``score_samples`` of the training embeddings themselves is higher, as each is then
        part of the model.
    classes_ : ndarray of shape (n_classes,) or None
        The labels the Gaussians belong to, when ``y`` was given to ``"mahalanobis"``;
        None otherwise.
    means_ : ndarray of shape (n_classes, n_features) or None
        For ``"mahalanobis"``: the class means of the L2-normalised embeddings (one row
        without labels). None for ``"knn"``.
    shrinkage_ : float or None
        For ``"mahalanobis"``: the Ledoit-Wolf coefficient, in [0, 1], of the shared
        covariance ``(1 - shrinkage_) * S + shrinkage_ * trace(S) / n_features * I``,
        ``S`` the covariance of the class-centred, L2-normalised embeddings. None for
        ``"knn"``.
    n_neighbors_ : int or None
        For ``"knn"``: the ``n_neighbors`` used (see ``n_neighbors``). None for
        ``"mahalanobis"``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of features seen during ``fit``. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    PretrainedFeatureExtractor : Embeds images; put it before this detector.
    sklearn.covariance.EllipticEnvelope : A robust Gaussian outlier detector, for data
        with more images than features.
    sklearn.neighbors.LocalOutlierFactor : A density-based neighbours detector.

    References
    ----------
    .. [1] K. Lee, K. Lee, H. Lee and J. Shin, "A simple unified framework for detecting
       out-of-distribution samples and adversarial attacks", NeurIPS 2018.
    .. [2] Y. Sun, Y. Ming, X. Zhu and Y. Li, "Out-of-distribution detection with deep
       nearest neighbors", ICML 2022.
    .. [3] M. Mueller and M. Hein, "Mahalanobis++: Improving OOD detection via feature
       normalization", arXiv:2505.18032, 2025.
    .. [4] O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional
       covariance matrices", Journal of Multivariate Analysis, 2004.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer import NoveltyDetector
    >>> rng = np.random.default_rng(0)
    >>> Z = 2.0 + rng.normal(size=(200, 16))  # embeddings of 200 training images
    >>> y = np.repeat([0, 1], 100)  # of two classes
    >>> Z[y == 0, :8] += 4.0
    >>> Z[y == 1, 8:] += 4.0
    >>> between = np.full(16, 4.0)  # between the classes
    >>> elsewhere = np.r_[np.full(8, 6.0), np.full(8, -2.0)]
    >>> detector = NoveltyDetector().fit(Z, y)
    >>> detector.predict([Z[0], between, elsewhere])
    array([ 1, -1, -1])
    >>> NoveltyDetector().fit(Z).predict([Z[0], between, elsewhere])  # one Gaussian
    array([ 1,  1, -1])
    >>> detector.score_samples([Z[0], elsewhere]).round(1)
    array([ -3.8, -12.7])

    In a pipeline after a feature extractor::

        from sklearn.pipeline import Pipeline
        pipe = Pipeline([("features", PretrainedFeatureExtractor()),
                         ("novelty", NoveltyDetector())]).fit(images, labels)
        pipe.predict(new_images)  # 1: like the training images, -1: novel
    """

    _parameter_constraints: dict = {
        "method": [StrOptions(set(METHODS))],
        "keep_rate": [_Numbers(Real, 0, 1, closed="right")],
        "n_neighbors": [_Numbers(Integral, 1, None, closed="left")],
    }

    def __init__(self, method: str = "mahalanobis", *, keep_rate: float = 0.95,
                 n_neighbors: int = 20):
        self.method = method
        self.keep_rate = keep_rate
        self.n_neighbors = n_neighbors

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: object, y: object = None) -> NoveltyDetector:
        """Learn the training embeddings' distribution and the threshold.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings of the training images (e.g. a feature extractor's output).
        y : array-like of shape (n_samples,), default=None
            Class labels of the training images. ``"mahalanobis"`` then fits one Gaussian
            per class (at least 2 classes); ``"knn"`` does not use them.

        Returns
        -------
        self : NoveltyDetector
            The fitted detector.
        """
        if y is None:
            X = validate_data(self, X, dtype=np.float64, ensure_all_finite=False)
        else:
            X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite=False)
        _check_finite(X)
        if X.shape[0] < 2:
            raise ValueError("NoveltyDetector needs at least 2 training embeddings to set "
                             f"its threshold, got n_samples={X.shape[0]}")
        # everything is computed first, then set: a fit that fails leaves no half state
        fitted = self._fit_knn(X) if self.method == "knn" else self._fit_mahalanobis(X, y)
        fitted = {"classes_": None, "means_": None, "shrinkage_": None,
                  "n_neighbors_": None, **fitted}
        fitted["offset_"] = _threshold(fitted["training_scores_"], self.keep_rate)
        for name, value in fitted.items():
            setattr(self, name, value)
        return self

    def _fit_mahalanobis(self, X: np.ndarray, y: object) -> dict:
        X = _normalise(X)
        classes = None
        if y is None:
            codes = np.zeros(len(X), dtype=np.intp)
        else:
            check_classification_targets(y)
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                label = classes[0]
                label = label.item() if isinstance(label, np.generic) else label
                raise ValueError(
                    f"y has a single class ({label!r}): give labels of at least "
                    "2 classes, or y=None to fit one Gaussian to all the embeddings")
        # the isotropic variance's floor, from the data's scale (all embeddings identical:
        # any other point is far)
        centred = X - X.mean(axis=0)
        floor = _VARIANCE_FLOOR * (float(np.mean(centred ** 2)) or 1.0)
        means, basis, gains, isotropic, shrinkage = _fit_gaussians(X, codes, floor)
        # held-out scores: each fold scored by Gaussians fitted on the other folds
        folds = np.empty(len(X), dtype=np.intp)
        n_folds = min(_N_FOLDS, len(X))
        folds[np.argsort(codes, kind="stable")] = np.arange(len(X)) % n_folds
        scores = np.empty(len(X))
        for fold in range(n_folds):
            held, kept = folds == fold, folds != fold
            model = _fit_gaussians(X[kept], codes[kept], floor)[:4]
            scores[held] = _mahalanobis_scores(X[held], *model)
        return {"classes_": classes, "means_": means, "_basis": basis, "_gains": gains,
                "_isotropic": isotropic, "shrinkage_": shrinkage, "training_scores_": scores}

    def _fit_knn(self, X: np.ndarray) -> dict:
        if X.shape[1] < 2:
            raise ValueError("method='knn' compares directions (L2-normalised embeddings): "
                             f"it needs at least 2 features, got n_features={X.shape[1]}")
        unit = _normalise(X)
        # exact duplicates are one reference point: leave-one-out leaves out every copy
        reference, inverse = np.unique(unit, axis=0, return_inverse=True)
        if len(reference) < 2:
            raise ValueError("method='knn' needs at least 2 distinct training embeddings, "
                             f"got 1 (n_samples={len(X)}, all identical after L2 "
                             "normalisation)")
        # as LocalOutlierFactor: a k beyond the other training embeddings is lowered
        k = min(self.n_neighbors, len(reference) - 1)
        if k < self.n_neighbors:
            warnings.warn(
                f"n_neighbors={self.n_neighbors} is more than the {len(reference) - 1} other "
                f"distinct training embeddings each one has: using n_neighbors_={k}",
                UserWarning, stacklevel=3)
        scores = _knn_scores(reference, reference, k, leave_one_out=True)[inverse.ravel()]
        return {"n_neighbors_": k, "_reference": reference, "training_scores_": scores}

    # ------------------------------------------------------------------ scores
    def score_samples(self, X: object) -> np.ndarray:
        """Typicality of each embedding: higher is more like the training embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            Minus the Mahalanobis distance of the L2-normalised embedding to the nearest
            class mean (``"mahalanobis"``), or minus the distance to the
            ``n_neighbors_``-th nearest training embedding after L2 normalisation
            (``"knn"``).
        """
        check_is_fitted(self, "offset_")  # set last: a failed fit leaves it unset
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=False)
        _check_finite(X)
        if self.method == "knn":
            return _knn_scores(_normalise(X), self._reference, self.n_neighbors_)
        return _mahalanobis_scores(_normalise(X), self.means_, self._basis, self._gains,
                                   self._isotropic)

    def decision_function(self, X: object) -> np.ndarray:
        """Typicality minus the threshold: negative for novel embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to score.

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            ``score_samples(X) - offset_``: at least 0 for embeddings kept as typical.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X: object) -> np.ndarray:
        """Say whether each embedding is typical (1) or novel (-1).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to judge.

        Returns
        -------
        is_typical : ndarray of shape (n_samples,), dtype int
            1 where ``decision_function(X) >= 0``, -1 elsewhere.
        """
        return np.where(self.decision_function(X) >= 0, 1, -1)

    # ------------------------------------------------------------------ exchange
    def _fitted_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """The fitted state without pickle: JSON-ready values and named float arrays.

        Returns
        -------
        values : dict
            JSON-ready values (method, threshold, labels, feature names, sizes).
        arrays : dict of str to ndarray
            The learned arrays, float64.
        """
        check_is_fitted(self, "offset_")
        classes = self.classes_
        names = getattr(self, "feature_names_in_", None)
        values = {
            "format": _STATE_FORMAT,
            "method": self.method,
            "n_features_in": int(self.n_features_in_),
            "offset": float(self.offset_),
            "classes": None if classes is None else classes.tolist(),
            "classes_dtype": None if classes is None or classes.dtype.kind == "O"
            else classes.dtype.str,
            "feature_names_in": None if names is None else [str(n) for n in names],
        }
        arrays = {"training_scores": self.training_scores_}
        if self.method == "knn":
            values["n_neighbors"] = int(self.n_neighbors_)
            arrays["reference"] = self._reference
        else:
            values["shrinkage"] = float(self.shrinkage_)
            values["isotropic"] = float(self._isotropic)
            arrays.update(means=self.means_, basis=self._basis, gains=self._gains)
        return values, {name: np.asarray(a, dtype=np.float64) for name, a in arrays.items()}

    @classmethod
    def _from_fitted_state(cls, params: dict, json: dict,
                           arrays: dict[str, np.ndarray]) -> NoveltyDetector:
        """A fitted detector from :meth:`_fitted_state`'s output, scoring identically.

        Parameters
        ----------
        params : dict
            The constructor parameters (``get_params()`` of the saved detector).
        json : dict
            The values :meth:`_fitted_state` returned.
        arrays : dict of str to ndarray
            The arrays :meth:`_fitted_state` returned.

        Returns
        -------
        detector : NoveltyDetector
            A fitted detector.
        """
        detector = cls(**params)
        if json.get("format") != _STATE_FORMAT or json.get("method") != detector.method:
            raise ValueError(
                f"fitted state of format {json.get('format')!r} for method "
                f"{json.get('method')!r} does not fit NoveltyDetector(method="
                f"{detector.method!r}) (format {_STATE_FORMAT})")

        def array(name: str) -> np.ndarray:
            return np.array(arrays[name], dtype=np.float64)

        detector.n_features_in_ = int(json["n_features_in"])
        if json.get("feature_names_in") is not None:
            detector.feature_names_in_ = np.asarray(json["feature_names_in"], dtype=object)
        detector.offset_ = float(json["offset"])
        detector.training_scores_ = array("training_scores")
        classes = json.get("classes")
        detector.classes_ = None if classes is None else (
            np.asarray(classes, dtype=json["classes_dtype"]) if json.get("classes_dtype")
            else _object_array(classes))
        detector.means_ = detector.shrinkage_ = detector.n_neighbors_ = None
        if detector.method == "knn":
            detector.n_neighbors_ = int(json["n_neighbors"])
            detector._reference = array("reference")
        else:
            detector.means_, detector._basis = array("means"), array("basis")
            detector._gains = array("gains")
            detector._isotropic = float(json["isotropic"])
            detector.shrinkage_ = float(json["shrinkage"])
        return detector


# ---------------------------------------------------------------------- helpers
def _check_finite(X: np.ndarray) -> None:
    """Refuse NaN and infinite embeddings, naming the rows."""
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"X contains NaN or infinity in {len(rows)} of {len(X)} embeddings (rows "
            f"{shown}): an image the feature extractor could not embed? Remove those rows")


def _threshold(scores: np.ndarray, keep_rate: float) -> float:
    """The score that ``ceil(keep_rate * n)`` of ``scores`` reach (more on ties)."""
    kept = min(len(scores), max(1, math.ceil(keep_rate * len(scores) - 1e-9)))
    return float(np.sort(scores)[len(scores) - kept])


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [tuple(v) if isinstance(v, list) else v for v in values]
    return out


def _ledoit_wolf_shrinkage(R: np.ndarray) -> float:
    """``sklearn.covariance.ledoit_wolf_shrinkage(R, assume_centered=True)``, computed
    from the smaller of the two Gram matrices (``n x n`` when there are fewer rows than
    columns, instead of ``d x d``)."""
    n, d = R.shape
    gram = R @ R.T if n <= d else R.T @ R
    row_norms = np.einsum("ij,ij->i", R, R)
    trace = float(row_norms.sum()) / n  # trace of the covariance
    mu = trace / d
    delta_ = float(np.sum(gram ** 2)) / n ** 2  # squared Frobenius norm of the covariance
    beta = (float(np.sum(row_norms ** 2)) / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu ** 2) / d
    if delta <= 0:  # the covariance is already a multiple of the identity
        return 0.0
    return float(min(max(beta, 0.0), delta) / delta)


def _fit_gaussians(X: np.ndarray, codes: np.ndarray, floor: float):
    """Class means and the shrunk shared covariance's inverse, in the data's span.

    The shrunk covariance is ``V diag(w) V^T + tau (I - V V^T)`` with ``V`` the right
    singular vectors of the class-centred data, ``w = (1 - s) * lambda + tau`` and
    ``tau = s * trace(S) / d``; so the squared distance of a residual ``r`` is
    ``isotropic * |r|^2 + sum_j gains_j (v_j . r)^2`` with ``isotropic = 1 / tau`` and
    ``gains = 1 / w - 1 / tau`` (``isotropic = 0`` and ``gains = 1 / w`` when ``V`` spans
    every direction).

    Returns
    -------
    means : ndarray of shape (n_present_classes, d)
    basis : ndarray of shape (d, r)
    gains : ndarray of shape (r,)
    isotropic : float
    shrinkage : float
    """
    present, local = np.unique(codes, return_inverse=True)
    means = np.stack([X[local == k].mean(axis=0) for k in range(len(present))])
    R = X - means[local]
    n, d = R.shape
    shrinkage = _ledoit_wolf_shrinkage(R)
    tau = max(shrinkage * float(np.mean(R ** 2)), floor)
    _, singular, vt = np.linalg.svd(R, full_matrices=False)
    variances = (1.0 - shrinkage) * singular ** 2 / n + tau
    isotropic = 0.0 if vt.shape[0] >= d else 1.0 / tau
    return means, vt.T, 1.0 / variances - isotropic, isotropic, shrinkage


def _mahalanobis_scores(X: np.ndarray, means: np.ndarray, basis: np.ndarray,
                        gains: np.ndarray, isotropic: float) -> np.ndarray:
    """Minus the smallest Mahalanobis distance from each row of ``X`` to ``means``."""
    projected = X @ basis
    projected_means = means @ basis
    best = np.full(len(X), np.inf)
    for mean, projected_mean in zip(means, projected_means, strict=True):
        squared = (projected - projected_mean) ** 2 @ gains
        if isotropic:
            squared += isotropic * np.einsum("ij,ij->i", X - mean, X - mean)
        np.minimum(best, squared, out=best)
    return -np.sqrt(np.maximum(best, 0.0))


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.finfo(np.float64).tiny)


def _knn_scores(queries: np.ndarray, reference: np.ndarray, k: int,
                leave_one_out: bool = False) -> np.ndarray:
    """Minus the distance from each query to its k-th nearest reference row (the query's
    own row left out when ``queries`` is ``reference``)."""
    reference_norms = np.einsum("ij,ij->i", reference, reference)
    out = np.empty(len(queries))
    for start in range(0, len(queries), _CHUNK):
        block = queries[start:start + _CHUNK]
        squared = (np.einsum("ij,ij->i", block, block)[:, None] + reference_norms
                   - 2.0 * block @ reference.T)
        if leave_one_out:
            rows = np.arange(len(block))
            squared[rows, start + rows] = np.inf
        kth = np.partition(squared, k - 1, axis=1)[:, k - 1]
        out[start:start + _CHUNK] = -np.sqrt(np.maximum(kth, 0.0))
    return out


__all__ = ["NoveltyDetector"]
