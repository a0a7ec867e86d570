"""ZeroShotClassifier: classes named in text, recognised by a vision-language model (CLIP),
with or without a few labelled images per class (a linear probe anchored to the text)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._cost import CostMeter, count_flops
from ._dask import is_dask_collection
from ._deployable import Deployable, Linear
from ._extractor import PretrainedFeatureExtractor
from ._validation import Interval, fit_context
from .images import as_image_source

#: The open_clip model every ``ZeroShotClassifier`` uses when ``model`` is not given.
DEFAULT_CLIP = "open_clip:ViT-B-32/laion2b_s34b_b79k"

#: The prompt ensemble of the CLIP authors' ImageNet notebook: the 7 of their 80 templates
#: that chose best (Radford et al. 2021, "Prompt_Engineering_for_ImageNet.ipynb").
DEFAULT_TEMPLATES = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

#: How strongly a few-shot fit is held to the text (see ``text_anchor``), measured by
#: benchmarks/bench_zero_shot.py.
TEXT_ANCHOR = 0.1
_PROBE_ITERATIONS = 200


# Its own entry for a parameter the other estimators document otherwise (recorded as
# fill_docstring records the others' own entries).
_MODEL = """model : str, default="open_clip:ViT-B-32/laion2b_s34b_b79k"
        A vision-language model: ``"open_clip:<architecture>/<pretrained tag>"`` (see
        ``open_clip.list_pretrained()``), ``"open_clip:local-dir:<folder>"`` (a folder with
        ``open_clip_config.json`` and weights) or ``"open_clip:hf-hub:<org>/<repo>"``. Needs
        ``pip install 'sktransfer[clip]'``."""


class ZeroShotClassifier(ClassifierMixin, PretrainedFeatureExtractor):
    """Classify images into classes named in text, zero-shot or from a few labelled images.

    A CLIP-style vision-language model does it.
    Each class becomes a text embedding: its name (or its descriptions) put into each
    prompt template, the prompts embedded by the model's text tower, normalised, averaged
    and normalised again, as ``open_clip.build_zero_shot_classifier`` does. An image's
    logits are ``logit_scale * cosine(image, class)`` (CLIP, Radford et al. 2021).

    With a few labelled images, ``fit(X, y)`` trains a linear probe on their embeddings
    that starts from the class text embeddings and is held to them: the class weights
    ``W`` minimise the cross-entropy of ``logit_scale * image @ W.T`` plus
    ``text_anchor * logit_scale / 2 * ||W - text||^2`` (the constrained linear probe of
    CLAP, Silva-Rodriguez et al., "A Closer Look at the Few-Shot Adaptation of Large
    Vision-Language Models", CVPR 2024, with one fixed penalty weight instead of CLAP's
    class-wise multipliers). A plain
    linear probe forgets the text; this one starts from zero-shot and moves as far as the
    labelled images ask. With no labelled image it is exactly zero-shot.

    It is a :class:`PretrainedFeatureExtractor` too: :meth:`transform` gives the image
    embeddings in the joint image-text space (unit length), with the extractor's cache,
    devices, precision and Dask support.

    Parameters
    ----------
    %(model)s
    weights : str, path or None, default="DEFAULT"
        ``"DEFAULT"``: the spec's pretrained weights (open_clip's download and cache; the
        folder's own); ``None``: random initialisation; or a local open_clip state-dict
        file (``.safetensors``, ``.pt``, ``.bin``), read without unpickling.
    classes : list, default=None
        The class labels; ``predict`` returns them as given. Their text (``str(label)``)
        names them in the prompts unless ``class_descriptions`` says otherwise. ``None``:
        the labels of ``y`` passed to :meth:`fit`.
    templates : list of str, default=None
        Prompt templates, each with one ``{}`` where the class name goes; the class
        embedding averages over them. ``None``: the 7-template ensemble of the CLIP
        authors' ImageNet notebook (``"itap of a {}."``, ``"a bad photo of the {}."``,
        ``"a origami {}."``, ``"a photo of the large {}."``, ``"a {} in a video game."``,
        ``"art of the {}."``, ``"a photo of the small {}."``).
    class_descriptions : dict, default=None
        Maps a class to one text or a list of texts that replace its name in the prompts
        (``{"tabby": ["tabby cat", "striped cat"]}``); classes not in it use their
        name.
    text_anchor : float, default=0.1
        How strongly a few-shot fit is held to the text: the weight of the squared
        distance between the class weights and the class text embeddings in its loss,
        times the model's ``logit_scale``, so that the value is meant to carry across
        models of other temperatures (measured on the tests' tiny CLIP only). Large values
        stay zero-shot; small ones trust the labelled images alone (a plain linear probe).
        Chosen in benchmarks/bench_zero_shot.py: best over 1, 2 and 4 shots per class.
    batch_size : int, default=32
        Images per forward pass.
    device : str or torch.device, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu.
    precision : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Autocast dtype of the image tower, as for :class:`PretrainedFeatureExtractor`;
        the text tower computes in float32 (once, at ``fit``).
    image_size, resize_size, mean, std : optional
        Preprocessing overrides, as for :class:`PretrainedFeatureExtractor`; ``None`` uses
        the model's own (``image_size`` other than the model's resamples its position
        embeddings).
    n_jobs : int, default=None
        Threads decoding image files ahead of the model; ``None`` means ``min(4, cpus)``.
    cache : str, path or joblib.Memory, default=None
        On-disk embedding cache of the images, as for :class:`PretrainedFeatureExtractor`.
    random_state : int, RandomState instance or None, default=None
        Seeds the random initialisation of a model built with ``weights=None``.
    verbose : bool, default=False
        Show a progress bar while embedding images.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, in the order of the columns of :meth:`predict_proba`.
    class_embeddings_ : ndarray of shape (n_classes, n_features), dtype float32
        Each class's unit-length text embedding.
    coef_ : ndarray of shape (n_classes, n_features), dtype float32
        The class weights the logits use: the text embeddings for zero-shot, the anchored
        probe's after a few-shot fit.
    logit_scale_ : float
        The model's temperature: image-weight products times it are logits.
    n_shots_ : int
        Labelled images the fit learnt from (0: zero-shot).
    n_features_out_ : int
        Length of each embedding.
    backbone_ : Backbone
        The image tower, its preprocessing and layer groups.
    precision_ : str
        The compute dtype ``precision`` resolved to at ``fit``.
    fit_cost_ : ComputeCost
        What ``fit`` cost: loading the model, embedding the prompts (their FLOPs count)
        and the labelled images.
    transform_cost_ : ComputeCost
        What the latest image embedding cost (``transform``, ``predict``...).

    See Also
    --------
    PretrainedFeatureExtractor : The image embeddings alone, for any classifier.
    FineTuneClassifier : Fine-tunes an image network on many labelled images.

    Notes
    -----
    Adding a class needs no image: ``set_params(classes=[..., "new"]).fit()``.

    Examples
    --------
    >>> from sktransfer import ZeroShotClassifier
    >>> clf = ZeroShotClassifier("open_clip:ViT-B-32/laion2b_s34b_b79k",
    ...                          classes=["cat", "dog", "car"])
    >>> clf.get_params()["templates"] is None
    True
    """

    def __init__(
        self,
        model: str = DEFAULT_CLIP,
        *,
        weights: str | os.PathLike | None = "DEFAULT",
        classes: Sequence | None = None,
        templates: Sequence[str] | None = None,
        class_descriptions: dict | None = None,
        text_anchor: float = TEXT_ANCHOR,
        batch_size: int = 32,
        device: str | torch.device = "auto",
        precision: str = "auto",
        image_size: int | None = None,
        resize_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        n_jobs: int | None = None,
        cache: str | os.PathLike | object | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self._store_params(locals())

    # the extractor's parameters this classifier does not take, fixed
    layer = None
    compile = False
    _declared_parameter_docs = {"model": _MODEL}

    _parameter_constraints: dict = {
        **{k: v for k, v in PretrainedFeatureExtractor._parameter_constraints.items()
           if k not in ("layer", "compile")},
        "model": [str],
        "classes": ["array-like", None],
        "templates": [list, tuple, None],
        "class_descriptions": [dict, None],
        "text_anchor": [Interval(Real, 0, None, closed="neither")],
    }

    # ------------------------------------------------------------------ fit
    @fit_context
    def fit(self, X: object = None, y: object = None) -> ZeroShotClassifier:
        """Embed the classes' prompts, and the labelled images if any.

        Parameters
        ----------
        X : images, default=None
            A few labelled images per class (few-shot), as for
            :meth:`PretrainedFeatureExtractor.transform`; ``None`` for zero-shot.
        y : array-like of shape (n_samples,), default=None
            Their labels. With ``classes=None``, the classes are the labels of ``y``
            (then ``y`` alone, with ``X=None``, names them for zero-shot).

        Returns
        -------
        self : ZeroShotClassifier
            The fitted classifier.
        """
        classes, labels = _classes_and_labels(self.classes, y)
        if X is None and labels is not None and self.classes is not None:
            raise ValueError("y without X: pass the labelled images as X, or give only "
                             "the classes")
        source = None
        if X is not None:
            if is_dask_collection(X):
                raise TypeError("fit takes the few labelled images in memory (paths, "
                                "arrays...), not a Dask collection; predictions take Dask "
                                "collections")
            source = as_image_source(X)
            if labels is not None and len(source) != len(labels):
                raise ValueError(f"X has {len(source)} images but y has {len(labels)} "
                                 "labels")
            if labels is None:
                source = None  # images without labels teach nothing here
        prompts = _prompts(classes, self.templates, self.class_descriptions)
        super().fit()  # the image tower; _setup keeps the text tower aside for here
        text = self.__dict__.pop("_text", None)
        if text is None:
            raise ValueError(f"model={self.model!r} has no text tower: ZeroShotClassifier "
                             "needs a vision-language model, e.g. 'open_clip:ViT-B-32/"
                             "laion2b_s34b_b79k'")
        device = self._device()
        meter = CostMeter(device, None, lazy_energy=True)
        try:
            class_embeddings = _class_embeddings(text.to_device(device), prompts, meter)
        finally:
            text_cost = meter.stop()  # before the images' own measurement starts
        logit_scale = float(text.logit_scale)
        coef, n_shots, cost = class_embeddings, 0, self.fit_cost_ + text_cost
        if source is not None and len(source):
            shots = self.transform(source)
            cost = cost + self.transform_cost_
            coef = anchored_probe(shots, labels, class_embeddings, logit_scale,
                                  self.text_anchor)
            n_shots = len(source)
        self.classes_, self.class_embeddings_, self.logit_scale_ = (classes, class_embeddings,
                                                                    logit_scale)
        self.coef_, self.n_shots_, self.fit_cost_ = coef, n_shots, cost
        return self

    def _setup(self, backbone) -> ZeroShotClassifier:
        self._text = backbone.text  # for fit; not kept in the fitted model
        return super()._setup(backbone)

    # ------------------------------------------------------------------ predictions
    def decision_function(self, X: object) -> np.ndarray:
        """Logits: ``logit_scale`` times the image embeddings' products with ``coef_``.

        Parameters
        ----------
        X : images
            As for :meth:`PretrainedFeatureExtractor.transform`.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,), dtype float32
            One column per class of ``classes_``; for two classes, as scikit-learn's
            binary classifiers do, the second class's logit minus the first's.
        """
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities: the softmax of the logits.

        Parameters
        ----------
        X : images
            As for :meth:`PretrainedFeatureExtractor.transform`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), dtype float32
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self, "classes_")
        if is_dask_collection(X):
            return self._lazy(X, "predict_proba")
        logits = torch.from_numpy(self._logits(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X: object) -> np.ndarray:
        """The most probable class of each image.

        Parameters
        ----------
        X : images
            As for :meth:`PretrainedFeatureExtractor.transform`.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self, "classes_")
        if is_dask_collection(X):
            return self._lazy(X, "predict")
        return self.classes_[np.argmax(self._logits(X), axis=1)]

    def _logits(self, X: object) -> np.ndarray:
        check_is_fitted(self, "classes_")
        if is_dask_collection(X):
            return self._lazy(X, "_logits")
        return (self.logit_scale_ * self.transform(X) @ self.coef_.T).astype(np.float32)

    def _output_meta(self, method: str) -> np.ndarray:
        if method == "transform":
            return super()._output_meta(method)
        if method == "predict":
            return np.empty(0, dtype=self.classes_.dtype)
        return np.empty((0, len(self.classes_)), dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # the classes may come from `classes`
        return tags

    # ------------------------------------------------------------------ deployment
    def __sktransfer_deploy__(self) -> Deployable:
        """What ``predict_proba`` computes: the image tower, the class weights scaled by
        ``logit_scale_``, a softmax (see :mod:`sktransfer.deploy`)."""
        check_is_fitted(self, "classes_")
        tower = super().__sktransfer_deploy__()
        network = Linear(tower.network, self.coef_, self.logit_scale_, 0.0,
                         finish=nn.Softmax(dim=1))
        return Deployable(network, "classifier", tower.preprocessing, self.classes_)

    # ------------------------------------------------------------------ exchange
    def __sktransfer_export__(self) -> tuple[nn.Module, object, list, dict]:
        """The image tower and the fitted class weights (see ``exchange``)."""
        check_is_fitted(self, "classes_")
        body, prep, groups, fitted = super().__sktransfer_export__()
        module = _Fitted(body, self.class_embeddings_, self.coef_)
        return module, prep, groups, {**fitted, "classes": self.classes_.tolist(),
                                      "logit_scale": self.logit_scale_,
                                      "n_shots": self.n_shots_}

    def __sktransfer_restore__(self, backbone, state: dict, fitted: dict) -> ZeroShotClassifier:
        """Become the fitted classifier that :meth:`__sktransfer_export__` described."""
        body = {k.removeprefix("body."): v for k, v in state.items() if k.startswith("body.")}
        super().__sktransfer_restore__(backbone, body, fitted)
        self.__dict__.pop("_text", None)
        self.classes_ = np.asarray(fitted["classes"])
        self.logit_scale_ = float(fitted["logit_scale"])
        self.class_embeddings_ = state["class_embeddings"].numpy()
        self.coef_ = state["coef"].numpy()
        self.n_shots_ = int(fitted["n_shots"])
        return self


ZeroShotClassifier.__doc__ = ZeroShotClassifier.__doc__.replace("%(model)s", _MODEL)


class _Fitted(nn.Module):
    """The tensors an exported ZeroShotClassifier holds: image tower, class weights."""

    def __init__(self, body: nn.Module, classes: np.ndarray, coef: np.ndarray):
        super().__init__()
        self.body = body
        self.register_buffer("class_embeddings", torch.from_numpy(classes))
        self.register_buffer("coef", torch.from_numpy(coef))


def anchored_probe(shots: np.ndarray, labels: np.ndarray, text: np.ndarray,
                   logit_scale: float, strength: float,
                   max_iter: int = _PROBE_ITERATIONS) -> np.ndarray:
    """Class weights from a few labelled embeddings, held to the text embeddings.

    Minimises ``mean cross-entropy(logit_scale * shots @ W.T, labels) + strength *
    logit_scale / 2 * ||W - text||^2`` from ``W = text`` (L-BFGS; the problem is convex,
    so the result does not depend on the start or the machine's randomness).

    Parameters
    ----------
    shots : ndarray of shape (k, d)
        Unit-length image embeddings of the labelled images.
    labels : ndarray of shape (k,)
        Their class indices.
    text : ndarray of shape (c, d)
        Unit-length class text embeddings.
    logit_scale : float
        The model's temperature.
    strength : float
        The weight of the distance to the text, in units of ``logit_scale``.
    max_iter : int, default=200
        L-BFGS iterations at most.

    Returns
    -------
    coef : ndarray of shape (c, d), dtype float32
        The class weights.
    """
    x = torch.from_numpy(np.asarray(shots, dtype=np.float64))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    anchor = torch.from_numpy(np.asarray(text, dtype=np.float64))
    weights = anchor.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weights], max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(logit_scale * x @ weights.T, y) + \
            strength * logit_scale / 2 * ((weights - anchor) ** 2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return weights.detach().float().numpy()


def _classes_and_labels(classes: object, y: object) -> tuple[np.ndarray, np.ndarray | None]:
    """The classes (checked) and ``y`` as class indices (None without ``y``)."""
    if classes is None and y is None:
        raise ValueError("no classes: pass classes=[...] or fit with labels y")
    if classes is not None:
        classes = list(classes)
        if len({isinstance(c, str) for c in classes}) > 1:
            raise ValueError(f"classes mixes strings and other labels: {classes[:10]}; "
                             "use labels of one kind")
        classes = np.asarray(classes)
        if classes.ndim != 1 or len(classes) == 0:
            raise ValueError("classes must be a non-empty list of labels")
        values, counts = np.unique(classes, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"classes holds duplicates: {values[counts > 1].tolist()}")
    if y is None:
        return classes, None
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per image, got shape {y.shape}")
    if classes is None:
        classes = np.unique(y)
        if len(classes) < 1:
            raise ValueError("y holds no label")
    index = {label: i for i, label in enumerate(classes.tolist())}
    unknown = sorted({label for label in y.tolist() if label not in index}, key=str)
    if unknown:
        raise ValueError(f"y has labels that are not in classes: {unknown[:10]}")
    return classes, np.asarray([index[label] for label in y.tolist()], dtype=np.int64)


def _prompts(classes: np.ndarray, templates: object, descriptions: object) -> list[list[str]]:
    """Every class's prompts: each of its texts put into each template."""
    templates = DEFAULT_TEMPLATES if templates is None else templates
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError("templates must be a non-empty list of strings with '{}'")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template {template!r} must be a string with one '{{}}' where "
                             "the class name goes")
    descriptions = dict(descriptions or {})
    known = set(classes.tolist())
    unknown = [key for key in descriptions if key not in known]
    if unknown:
        raise ValueError(f"class_descriptions names classes not in classes: {unknown[:10]}")
    prompts = []
    for label in classes.tolist():
        texts = descriptions.get(label, str(label))
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise ValueError(f"class_descriptions[{label!r}] must be a text or a non-empty "
                             "list of texts")
        prompts.append([template.format(text) for text in texts for template in templates])
    return prompts


@torch.no_grad()
def _class_embeddings(text: nn.Module, prompts: list[list[str]], meter: CostMeter,
                      batch_size: int = 256) -> np.ndarray:
    """Each class's unit-length embedding: its prompts' unit-length embeddings averaged,
    then normalised (as ``open_clip.build_zero_shot_classifier``)."""
    flat = [p for class_prompts in prompts for p in class_prompts]
    meter.computing()
    embedded = torch.cat([text(flat[i:i + batch_size]) for i in range(0, len(flat),
                                                                       batch_size)])
    per_prompt = _text_flops(text)
    meter.add_flops(len(flat) * per_prompt)
    out, start = [], 0
    for class_prompts in prompts:
        mean = embedded[start:start + len(class_prompts)].mean(dim=0)
        out.append(mean / mean.norm())
        start += len(class_prompts)
    return torch.stack(out).float().cpu().numpy()


def _text_flops(text: nn.Module) -> int:
    """Forward FLOPs of the text tower per prompt (0 when it cannot be counted)."""
    length = getattr(text, "context_length", None)
    if length is None:
        return 0
    forward, _ = count_flops(text, (length,), forward=lambda m, x: m.encode(x.long()),
                             forward_key="text tower")
    return forward
