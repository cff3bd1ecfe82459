"""Entry script of the digit_identification DAG: which digit is in each PNG image.

``init()`` fits the model once per worker process: 3 nearest neighbours over the training
digits of the ``labels`` side input (given as ``--labels_dir``). ``run()`` returns one
``"<file>: <digit>"`` line per image of its mini-batch.
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np
from png import read_png

from airflow_parallel_run import EntryScript

NEIGHBOURS = 3

train_pixels: np.ndarray
train_labels: np.ndarray


def features(path: str) -> np.ndarray:
    """The 8x8 ink levels (0..16) of an image written by prepare.py (8x8 blocks of pixels)."""
    image = np.asarray(read_png(path), dtype=np.float64)
    scale = image.shape[0] // 8
    blocks = image.reshape(8, scale, 8, scale).mean(axis=(1, 3))
    return ((255.0 - blocks) * 16.0 / 255.0).ravel()


def init() -> None:
    global train_pixels, train_labels
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels_dir", required=True, help="folder with labels.csv and train/")
    args, _ = parser.parse_known_args()
    with open(os.path.join(args.labels_dir, "labels.csv"), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    train_pixels = np.stack([features(os.path.join(args.labels_dir, "train", row["file"]))
                             for row in rows])
    train_labels = np.array([int(row["label"]) for row in rows])
    EntryScript().logger.info("fitted %d-nearest-neighbours on %d training digits",
                              NEIGHBOURS, len(rows))


def run(mini_batch: list[str]) -> list[str]:
    pixels = np.stack([features(path) for path in mini_batch])
    distances = ((pixels[:, None, :] - train_pixels[None, :, :]) ** 2).sum(axis=2)
    nearest = np.argsort(distances, axis=1)[:, :NEIGHBOURS]
    digits = [int(np.bincount(train_labels[row], minlength=10).argmax()) for row in nearest]
    EntryScript().logger.debug("identified %d images", len(mini_batch))
    return [f"{os.path.basename(path)}: {digit}"
            for path, digit in zip(mini_batch, digits, strict=True)]
