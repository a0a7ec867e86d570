"""Documentation the fine-tuning estimators share, written once and placed into each
estimator's docstring by :func:`fill_docstring`."""

from __future__ import annotations

import re

# Shared parameter documentation, placed into each estimator's docstring.
SHARED_PARAMETERS = """\
model : str or torch.nn.Module, default="efficientnet_b0"
        Backbone, as for :class:`PretrainedFeatureExtractor`.
    weights : str, path or None, default="DEFAULT"
        Backbone weights, as for :class:`PretrainedFeatureExtractor`.
    unfreeze : int or "all", default=0
        Number of top layer groups to train besides the head.
    lr : float or "auto", default=1e-3
        Learning rate of the head. ``"auto"`` runs :meth:`lr_find` on the training
        data inside ``fit`` and uses its suggestion (kept in ``lr_``).
    lr_decay : float or None, default=None
        Factor between the learning rates of consecutive groups (0 < lr_decay <= 1): the
        group ``d`` levels below the head trains at ``lr * lr_decay ** d``. ``None``
        spreads the rates geometrically from ``lr`` at the head to ``lr / 100`` at the
        stem, whatever the number of groups; :meth:`summary` shows the rates.
    schedule : {"onecycle", "cosine", "constant"}, default="onecycle"
        Learning-rate schedule, stepped at every batch and restarted for the unfrozen
        phase: ``"onecycle"`` warms up from ``lr/25`` to ``lr`` over a quarter of the
        phase, then anneals to ``lr/1e5`` (cosine both ways, as fastai's
        ``fit_one_cycle``); ``"cosine"`` warms up linearly over a tenth, then anneals to
        0; ``"constant"`` keeps the rates. Every group follows the same curve, so the
        layer-wise ratios hold.
    batchnorm : {"frozen", "recalibrate", "train"}, default="frozen"
        BatchNorm layers of trained groups: ``"frozen"`` keeps every BatchNorm layer in
        eval mode, normalising with its pretrained statistics, while its affine
        parameters train where its group does (the Keras rule); ``"recalibrate"`` trains
        them with batch statistics, then recomputes their running statistics over the
        training images (without augmentation) after training, and after every epoch
        when there is a validation set, so that early stopping compares epochs with
        statistics that match their weights; ``"train"`` only updates the running
        statistics with the layers' momentum, which with small momenta (0.01 in
        EfficientNet-Lite) leaves them describing the pretraining data: the model learns,
        its predictions do not. BatchNorm layers of frozen groups are always in eval
        mode. The default was chosen by measurement (see the performance page); for a
        network with random weights use ``"recalibrate"`` (``"frozen"`` would keep its
        initial statistics).
    freeze_epochs : int, default=1
        Epochs that train the head alone before the ``unfreeze`` groups join with fresh
        optimizer state (two-phase schedule). Ignored when ``unfreeze=0``.
    max_epochs : int, default=10
        Total epochs, both phases included.
    batch_size : int, default=32
        Images per step.
    optimizer : {"adamw", "adam", "sgd"}, default="adamw"
        Optimizer (SGD with momentum 0.9).
    weight_decay : float, default=1e-4
        Weight decay of the optimizer, on the weights of convolutions and linear layers;
        biases and normalisation weights (1-d parameters) are not decayed (timm's
        convention).
    validation_fraction : float, default=0.0
        Share of the training data held out (stratified for single-label classes) for
        early stopping: training stops when the validation loss has not improved for
        ``patience`` epochs and the best weights are restored. ``0`` trains for
        ``max_epochs``.
    patience : int, default=3
        Epochs without improvement before early stopping.
    augment : bool or callable, default=False
        Training-time augmentation: ``True`` for random resized crop, flip and colour
        jitter; or a callable taking and returning a PIL image or ``(3, H, W)`` tensor.
        Never applied at prediction.
    tta : bool or int, default=False
        Test-time augmentation at prediction (never in ``fit``): ``True`` averages the
        outputs for the image and its mirror image; an int ``n`` (1 to 9) for ``n``
        crops and their mirror images: the centre crop, then the four corners and the
        four edge midpoints of the image resized to ``resize_size`` (crops only differ
        where ``resize_size`` exceeds the crop size). Costs ``2 n`` forward passes.
    groups : list or dict, default=None
        Layer groups (stem first), when the backbone's natural stages do not suit.
    image_size, resize_size, mean, std : optional
        Preprocessing overrides, as for :class:`PretrainedFeatureExtractor`.
    device : str, default="auto"
        ``"auto"`` picks cuda, then mps, then cpu.
    precision : {"auto", "float32", "bfloat16"}, default="auto"
        Autocast dtype of forward passes; ``"auto"`` is bf16 on GPUs that support it and
        on CPUs that compute it in hardware (AVX-512 BF16, AMX, Arm BF16), float32
        elsewhere. (float16 training would need loss scaling, so it is refused.)
        Prediction resolves it again on the machine it runs on: a model trained in
        bfloat16 predicts in float32 on a CPU without native bf16, and the reverse, with
        the same labels and probabilities within a few bf16 roundings (see the user
        guide's "Precision" section).
    random_state : int, RandomState instance or None, default=None
        Seed for head initialisation, shuffling, the validation split and augmentation
        (a RandomState instance or None draws the seed from it, or from NumPy's global
        generator). On the CPU, equal seeds and equal thread counts give identical models
        (see ``n_threads``). The global torch RNG is left as is.
    num_workers : int, default=0
        DataLoader worker processes decoding and augmenting images during training and
        prediction; 0 does it in the main process.
    n_threads : int, default=None
        CPU threads torch uses during ``fit`` and ``predict`` (restored afterwards);
        ``None`` keeps torch's setting. Training results depend on the thread count
        (gradient sums are split differently), and ``GridSearchCV(n_jobs=k)`` runs its
        fits in workers with fewer threads than a single process, so set ``n_threads``
        (1 suits parallel searches) for results identical across ``n_jobs`` settings.
    checkpoint : path, default=None
        Folder for a checkpoint written (atomically) after every epoch: weights, optimizer
        state, history, random state. A fit with the same parameters on the same data
        resumes from it where the previous one stopped; one that has already finished
        returns at once; raising ``max_epochs`` continues training. Each distinct fit
        (parameters, images, targets, weights) has its own file, so cross-validation
        folds and grid points never collide. Delete the folder to start over.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks, for power users.
    verbose : bool, default=False
        Print skorch's per-epoch table.
    adapter : {"lora"} or None, default=None
        Low-rank adapters (LoRA, Hu et al. 2021) instead of training the weights of the
        ``unfreeze`` groups: their weights stay frozen and a trained update of rank
        ``adapter_rank`` (``W + adapter_alpha / adapter_rank * B @ A``, B starting at 0,
        so training starts from the pretrained network exactly) is added to each target
        layer; the head still trains fully, and ``lr_decay`` still sets each group's rate.
        Far fewer parameters train and keep optimizer state (:meth:`summary` counts them).
        ``None`` trains the groups' weights themselves.
    adapter_rank : int, default=8
        The rank of each adapter (clipped to a layer's smaller dimension).
    adapter_alpha : float, default=8.0
        The scale of the adapters' updates (``adapter_alpha / adapter_rank``).
    adapter_targets : list of str or None, default=None
        The layers that get adapters, as shell patterns (``fnmatch``) on the backbone's
        module names (e.g. ``["blocks.*.attn.qkv"]``); within the ``unfreeze`` groups.
        ``None``: every linear layer (attention's ``qkv`` and projections, MLPs), every
        attention's input projection and every pointwise (1x1) convolution; depthwise
        and larger convolutions, norms and embeddings are left frozen.
    adapter_merge : bool, default=True
        Fold the adapters into the weights after training: predicting costs nothing
        extra and the fitted network is a plain one (joblib, the pickle-free export,
        ONNX and Dask as without adapters). ``False`` keeps them separate (the
        pickle-free export then holds the adapters beside the weights)."""

SHARED_ATTRIBUTES = """\
net_ : skorch.NeuralNet
        The fitted skorch net (its ``history``, ``module_``...).
    layer_groups_ : list of str
        Names of the backbone's layer groups, stem first.
    lr_ : float
        The head's learning rate used (``lr``, or the finder's suggestion).
    lr_find_ : LRFindResult or None
        The range test run by ``lr="auto"``.
    n_epochs_ : int
        Epochs trained (resumed ones included).
    best_epoch_ : int
        The epoch whose weights the model holds: the lowest validation loss, or the last
        completed epoch without a validation set.
    interrupted_ : bool
        Whether ``fit`` was stopped by Ctrl-C (KeyboardInterrupt).
    precision_ : str
        The dtype training computed in: what ``precision`` resolved to on the fitting
        machine (``"float32"`` or ``"bfloat16"``; ``"auto"`` is bfloat16 on GPUs that
        support it and on CPUs with native bf16, float32 elsewhere). Kept by
        :func:`~sktransfer.export_model`.
    fit_cost_ : ComputeCost or None
        What ``fit`` cost: wall time, images through the network (every epoch, the
        validation passes, the learning-rate finder and BatchNorm recalibration included),
        forward and backward FLOPs (torch's counter; frozen layers need no backward
        pass), device, precision, and energy and CO2e when ``codecarbon`` is installed.
        None for a model read with :func:`~sktransfer.import_model`."""

# Calibration and rejection: the classifiers' (FineTuneClassifier, DomainAdaptationClassifier).
TRUST_PARAMETERS = """\
calibration : {"auto", "temperature"} or None, default="auto"
        Temperature scaling of the probabilities (Guo et al. 2017): after training, one
        temperature ``temperature_`` is fitted to the validation images' logits (one pass
        over them, none over the training images) to minimise their log-loss, and divides
        the logits in :meth:`predict_proba` and :meth:`decision_function`. It never
        changes :meth:`predict`. ``"temperature"`` needs ``validation_fraction > 0``;
        ``"auto"`` calibrates when there is a validation split and leaves the
        probabilities alone otherwise; ``None`` never calibrates (set after fit, it
        switches the fitted temperature off). The default was chosen
        by measurement (see the performance page): fine-tuned networks are
        overconfident, and the temperature lowered the expected calibration error and
        the log-loss of held-out images on the tasks measured.
    reject_label : label or None, default=None
        The label :meth:`predict` returns for images unlike the training images ("none
        of these"), e.g. ``-1`` for numeric labels or ``"unknown"`` for strings: of the
        labels' kind, not one of them. It is not a class: ``classes_`` and the columns
        of :meth:`predict_proba` stay the classes of ``y``, and ``score`` counts a
        rejected image as an error. ``fit`` then also embeds the training images once
        (the head's input; unlabelled ones too, with the class the network gives them)
        and fits the ``novelty`` score with a threshold that keeps ``keep_rate`` of
        images like them; :meth:`typicality` gives the score. ``novelty`` and
        ``keep_rate`` changed after fit need a refit. ``None``: every image gets a class.
        Single-label ``y`` only.
    novelty : {"mahalanobis", "knn", "energy"}, default="mahalanobis"
        How typical an image is, for ``reject_label``: the Mahalanobis distance of its
        embedding to the nearest class mean (:class:`NoveltyDetector`), the distance to
        its k-th nearest training embedding, or the energy of its logits. The default
        was chosen by measurement (see the performance page).
    keep_rate : float, default=0.95
        Share of the training images the reject threshold keeps, in (0, 1]: 1 keeps
        the least typical training image."""

TRUST_ATTRIBUTES = """\
temperature_ : float
        The fitted temperature (1.0 when not calibrated: ``calibration=None``, or
        ``"auto"`` without a validation split)."""

SHARED_NOTES = """\
**Interrupting.** Ctrl-C during ``fit`` stops training and leaves the estimator
    fitted with the best weights so far (``best_epoch_``, ``interrupted_=True``; a
    classifier calibrated and with its reject threshold, unless a second Ctrl-C stops
    that pass too); the
    KeyboardInterrupt is then re-raised so that scripts and searches stop too. Ctrl-C
    before the first epoch ends leaves the estimator as it was. With ``checkpoint``,
    calling ``fit`` again resumes; on the CPU the resumed model is identical to one
    trained without interruption."""


def _with_entries(section: str, entries: dict[str, str]) -> str:
    """``section`` with the entries of the named parameters replaced by ``entries``'s
    (each ``"name : type\n        description"``, indented as the section's)."""
    for name, text in entries.items():
        match = re.search(rf"(^|\n    ){re.escape(name)} : .*?(?=\n    \S|\Z)", section,
                          flags=re.S)
        if match is None:
            raise KeyError(f"no shared parameter {name!r}")
        section = section[:match.start()] + match.group(1) + text + section[match.end():]
    return section


def fill_docstring(cls: type | None = None, *, parameters: dict[str, str] | None = None):
    """Put the shared parameter, attribute and notes sections into ``cls.__doc__``;
    ``parameters`` replaces the entries of shared parameters (and of the classifiers'
    calibration and rejection parameters) that mean something else for that estimator
    (usable as ``@fill_docstring(parameters={...})``)."""
    if cls is None:
        return lambda klass: fill_docstring(klass, parameters=parameters)
    parameters = dict(parameters or {})
    trust_names = {name for name in parameters if re.search(
        rf"(^|\n    ){re.escape(name)} : ", TRUST_PARAMETERS)}
    shared = _with_entries(SHARED_PARAMETERS, {k: v for k, v in parameters.items()
                                               if k not in trust_names})
    trust = _with_entries(TRUST_PARAMETERS, {k: parameters[k] for k in trust_names})
    cls._declared_parameter_docs = parameters  # its own entries (tests read them)
    cls.__doc__ = (cls.__doc__.replace("%(shared_parameters)s", shared)
                   .replace("%(shared_attributes)s", SHARED_ATTRIBUTES)
                   .replace("%(shared_notes)s", SHARED_NOTES)
                   .replace("%(trust_parameters)s", trust)
                   .replace("%(trust_attributes)s", TRUST_ATTRIBUTES))
    return cls
