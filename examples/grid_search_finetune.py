"""Let cross-validation choose how much of the network to fine-tune.

GridSearchCV over the unfreeze depth (0 = head only, the frozen-base strategy; k = the
top k layer groups too) and the layer-wise learning-rate decay.

Run: python examples/grid_search_finetune.py [--quick]
"""

import argparse

from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sktransfer import FineTuneClassifier
from sktransfer.datasets import load_region_patches
from sktransfer.zoo import LITE_MEAN, LITE_STD, efficientnet_lite0

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--quick", action="store_true", help="fewer epochs and candidates")
args = parser.parse_args()

X_train, y_train = load_region_patches(5, seed=0)
X_test, y_test = load_region_patches(5, seed=1)

epochs = 3 if args.quick else 30
clf = FineTuneClassifier(
    efficientnet_lite0(), image_size=64, mean=LITE_MEAN, std=LITE_STD,
    lr=3e-3, max_epochs=epochs, freeze_epochs=epochs - 2,  # head first, then 2 epochs more
    batch_size=30, random_state=0,
)
grid = {"unfreeze": [0, 2], "lr_decay": [0.3]} if args.quick else \
    {"unfreeze": [0, 1, 2], "lr_decay": [0.1, 0.3]}
search = GridSearchCV(clf, grid, cv=StratifiedKFold(2 if args.quick else 3, shuffle=True,
                                                    random_state=0))
search.fit(X_train, y_train)

for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"],
                         strict=True):
    print(f"cv accuracy {score:.3f}  {params}")
best = search.best_estimator_
print(f"best: {search.best_params_}, test accuracy {best.score(X_test, y_test):.3f}")
for row in best.summary():  # parameters per layer group, trained or frozen, learning rate
    print(row)
