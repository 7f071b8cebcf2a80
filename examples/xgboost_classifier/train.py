"""Train an XGBoost classifier on a CSV whose last column is ``label``.

Hyperparameters: ``num_boost_round`` (default 20), ``max_depth`` (default 3), ``eta``
(default 0.3). Writes ``model.json`` (XGBoost's portable format) to the output directory and
logs ``train-logloss`` / ``eval-logloss`` every round.
"""

from __future__ import annotations

import csv
import logging

import numpy as np
import xgboost as xgb

from ml_platform import runtime

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("train")


class _MetricsCallback(xgb.callback.TrainingCallback):
    def after_iteration(self, model: object, epoch: int, evals_log: dict) -> bool:  # type: ignore[override]
        latest = {
            f"{split}-{name}": values[-1]
            for split, metrics in evals_log.items()
            for name, values in metrics.items()
        }
        runtime.log_metrics(latest, step=epoch + 1)
        return False


def main() -> None:
    params = runtime.hyperparameters()
    with runtime.open_data("r") as handle:
        rows = list(csv.reader(handle))
    data = np.asarray(rows[1:], dtype=np.float64)
    features, labels = data[:, :-1], data[:, -1]
    split = int(len(labels) * 0.75)
    train = xgb.DMatrix(features[:split], label=labels[:split])
    evaluation = xgb.DMatrix(features[split:], label=labels[split:])
    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "max_depth": int(params.get("max_depth", 3)),
            "eta": float(params.get("eta", 0.3)),
            "nthread": 1,
        },
        train,
        num_boost_round=int(params.get("num_boost_round", 20)),
        evals=[(train, "train"), (evaluation, "eval")],
        callbacks=[_MetricsCallback()],
        verbose_eval=False,
    )
    target = runtime.output_dir() / "model.json"
    booster.save_model(str(target))
    log.info("wrote %s", target)


if __name__ == "__main__":
    main()
