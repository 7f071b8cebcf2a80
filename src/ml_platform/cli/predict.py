"""``mlp predict``: one prediction (``--features``) or one per CSV row (``--file``), over gRPC."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ml_platform.cli._common import (
    Output,
    OutputOption,
    console,
    emit_json,
    parse_pairs,
    show_table,
)
from ml_platform.cli._sdk import connect

if TYPE_CHECKING:
    from ml_platform.client import Prediction

FeatureRow = dict[str, float | str]


def feature_value(text: str) -> float | str:
    """A number when it reads as one (the models take numbers), else the text itself."""
    try:
        return float(text)
    except ValueError:
        return text


def read_rows(path: Path) -> list[FeatureRow]:
    """A CSV with a header of feature names, one row per prediction."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise typer.BadParameter(f"{path} has no header row", param_hint="--file")
        rows = [
            {str(k).strip(): feature_value(str(v).strip()) for k, v in row.items() if k}
            for row in reader
        ]
    if not rows:
        raise typer.BadParameter(f"{path} has a header but no rows", param_hint="--file")
    return rows


def _document(prediction: Prediction) -> dict[str, object]:
    return prediction.model_dump(mode="json")


def predict(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Deployment name")],
    features: Annotated[
        list[str] | None,
        typer.Option("--features", help="Feature values name=value,name=value (repeatable)"),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", exists=True, dir_okay=False, help="CSV with a header of feature names"
        ),
    ] = None,
    output: OutputOption = Output.TEXT,
) -> None:
    """Predict with a deployment: one row from --features, or every row of --file."""
    if (features is None) == (file is None):
        raise typer.BadParameter("give exactly one of --features or --file")
    if file is not None:
        rows = read_rows(file)
        with connect(ctx) as client:
            predictions = client.deployments.get(name).predict_batch(rows)
        if output is Output.JSON:
            emit_json([_document(p) for p in predictions])
            return
        show_table(
            None,
            ["row", "prediction", "scores", "version"],
            [
                [i, p.predictions, p.confidence_scores, p.model_version_used]
                for i, p in enumerate(predictions)
            ],
        )
        return
    row: FeatureRow = {
        k: feature_value(v) for k, v in parse_pairs(features, "--features", commas=True).items()
    }
    with connect(ctx) as client:
        prediction = client.predict(name, row)
    if output is Output.JSON:
        emit_json(_document(prediction))
        return
    values = ", ".join(f"{v:g}" for v in prediction.predictions)
    scores = ", ".join(f"{k}={v:.4g}" for k, v in prediction.confidence_scores.items())
    console.print(
        values
        + (f"  ({scores})" if scores else "")
        + f"  [version {prediction.model_version_used}]",
        markup=False,
        highlight=False,
    )
