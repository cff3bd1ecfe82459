"""The digits as PNG files, made once from the data that ships with this example.

Layout under the target folder::

    images/digit_1001.png ...      the digits to identify: the step's input
    labels/labels.csv              file,split,label of every digit: the side input
    labels/train/digit_0001.png ...  the training digits that init() fits the model on

Run as a script (``python prepare.py FOLDER``) or called by the DAG's first task.
"""

from __future__ import annotations

import csv
import gzip
import os
import shutil
import sys

from png import write_png

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "digits.csv.gz")
TRAIN_COUNT = 1000  # the first 1,000 digits train the model; the other 797 are identified
SCALE = 4  # 8x8 pixels drawn as 32x32, so that a person can look at them


def load_digits() -> list[tuple[list[int], int]]:
    """(64 pixels 0..16, label) of every digit, in the order of the data file."""
    with gzip.open(DATA, "rt") as handle:
        rows = [[int(float(v)) for v in line.split(",")] for line in handle if line.strip()]
    return [(row[:64], row[64]) for row in rows]


def to_rows(pixels: list[int]) -> list[list[int]]:
    """Dark ink on white, each pixel a SCALE x SCALE block."""
    rows = []
    for y in range(8):
        line = [255 - pixels[y * 8 + x] * 255 // 16 for x in range(8) for _ in range(SCALE)]
        rows.extend([line] * SCALE)
    return rows


def make_images(target: str) -> str:
    """Write the images and labels under ``target`` unless they are there already."""
    if os.path.exists(os.path.join(target, "labels", "labels.csv")):
        return target
    building = f"{target}.building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(os.path.join(building, "images"))
    os.makedirs(os.path.join(building, "labels", "train"))
    with open(os.path.join(building, "labels", "labels.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "split", "label"])
        for number, (pixels, label) in enumerate(load_digits(), start=1):
            name = f"digit_{number:04d}.png"
            split = "train" if number <= TRAIN_COUNT else "test"
            folder = ("labels", "train") if split == "train" else ("images",)
            write_png(os.path.join(building, *folder, name), to_rows(pixels))
            writer.writerow([name, split, label])
    shutil.rmtree(target, ignore_errors=True)  # a half-made folder from an interrupted run
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    os.rename(building, target)
    return target


if __name__ == "__main__":
    print(make_images(sys.argv[1]))
