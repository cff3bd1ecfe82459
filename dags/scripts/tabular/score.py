"""Entry script of the tabular_scoring DAG: a default-risk score for each loan application.

``init()`` loads the model (``model.json`` beside this script); ``run()`` gets a
``pandas.DataFrame`` of applications and returns one with ``id``, ``score`` and ``decision``
per row, which the reducer appends to ``scores.csv``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from airflow_parallel_run import EntryScript

model: dict


def init() -> None:
    global model
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.json")) as handle:
        model = json.load(handle)
    EntryScript().logger.info("model loaded: %d features, threshold %s",
                              len(model["features"]), model["threshold"])


def run(mini_batch: pd.DataFrame) -> pd.DataFrame:
    z = np.full(len(mini_batch), model["intercept"], dtype=float)
    for column, f in model["features"].items():
        z += f["weight"] * (mini_batch[column].to_numpy(dtype=float) - f["mean"]) / f["scale"]
    score = 1.0 / (1.0 + np.exp(-z))
    EntryScript().logger.debug("scored %d applications", len(mini_batch))
    return pd.DataFrame({
        "id": mini_batch["id"].to_numpy(),
        "score": score.round(4),
        "decision": np.where(score >= model["threshold"], "refer", "accept"),
    })
