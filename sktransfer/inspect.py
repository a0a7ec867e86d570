"""Error analysis of fitted image classifiers: what they get wrong, which labels look
wrong, and where the network looked.

- :func:`top_losses`: the images of highest loss, as a table (with their file paths);
- :func:`most_confused`: the pairs of classes confused most often;
- :func:`label_issues`: images that are probably mislabelled, by confident learning on
  out-of-fold probabilities;
- :func:`explain`: Grad-CAM heat maps of a class on each image's own pixels;
- :func:`plot_top_losses`: a figure of the worst images with their heat maps.

They take fitted sktransfer classifiers and scikit-learn pipelines that end in a
classifier; the tables are pandas DataFrames and the figure a matplotlib one (both
imported only when used).

Examples
--------
>>> from sktransfer.inspect import explain, label_issues, top_losses
>>> top_losses(clf, X_test, y_test, k=5)  # doctest: +SKIP
>>> label_issues(make_pipeline(PretrainedFeatureExtractor(), LogisticRegression()),
...              X, y, cv=5)  # doctest: +SKIP
"""

from __future__ import annotations

from ._gradcam import explain
from ._label_issues import label_issues
from ._losses_table import most_confused, top_losses
from ._plots import plot_top_losses

__all__ = ["explain", "label_issues", "most_confused", "plot_top_losses", "top_losses"]
