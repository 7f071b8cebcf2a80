"""Train a scikit-learn classifier on a CSV whose last column is ``label``.

Runs as a platform job (reads ``ml_platform.runtime``) or locally:

    ML_PLATFORM_DATA_PATH=train.csv python examples/sklearn_classifier/train.py

Hyperparameters: ``epochs`` (passes over the data, default 5), ``learning_rate``
(default 0.05), ``test_fraction`` (default 0.25), ``sleep_seconds`` (pause per epoch,
to watch metrics stream live; default 0).
"""

from __future__ import annotations

import csv
import logging
import time

import joblib
import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

from ml_platform import runtime

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
log = logging.getLogger("train")


def load_csv(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with runtime.open_data("r", path) as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    data = np.asarray(body, dtype=np.float64)
    return data[:, :-1], data[:, -1].astype(int), header[:-1]


def main() -> None:
    params = runtime.hyperparameters()
    epochs = int(params.get("epochs", 5))
    learning_rate = float(params.get("learning_rate", 0.05))
    test_fraction = float(params.get("test_fraction", 0.25))
    pause = float(params.get("sleep_seconds", 0))

    features, labels, names = load_csv(runtime.data_path())
    log.info("loaded %d rows with features %s", len(labels), names)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=test_fraction, random_state=0, stratify=labels
    )
    model = SGDClassifier(
        loss="log_loss", learning_rate="constant", eta0=learning_rate, random_state=0
    )
    classes = np.unique(labels)
    for epoch in range(1, epochs + 1):
        model.partial_fit(x_train, y_train, classes=classes)
        loss = log_loss(y_train, model.predict_proba(x_train), labels=classes)
        accuracy = accuracy_score(y_test, model.predict(x_test))
        runtime.log_metrics({"loss": loss, "accuracy": accuracy}, step=epoch)
        log.info("epoch %d: loss=%.4f accuracy=%.4f", epoch, loss, accuracy)
        if pause:
            time.sleep(pause)

    target = runtime.output_dir() / "model.joblib"
    joblib.dump(model, target)
    log.info("wrote %s", target)


if __name__ == "__main__":
    main()
