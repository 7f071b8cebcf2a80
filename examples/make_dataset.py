"""Write a small, deterministic binary-classification CSV (no downloads, standard library only).

python examples/make_dataset.py out.csv --rows 400 --features 4 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from pathlib import Path


def make_dataset(path: Path, rows: int = 400, features: int = 4, seed: int = 0) -> Path:
    rng = random.Random(seed)
    weights = [rng.uniform(-2, 2) for _ in range(features)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"f{i}" for i in range(features)] + ["label"])
        for _ in range(rows):
            x = [rng.gauss(0, 1) for _ in range(features)]
            score = sum(w * v for w, v in zip(weights, x, strict=True)) + rng.gauss(0, 0.3)
            label = 1 if 1 / (1 + math.exp(-score)) > 0.5 else 0
            writer.writerow([f"{v:.6f}" for v in x] + [label])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_dataset(args.path, args.rows, args.features, args.seed)


if __name__ == "__main__":
    main()
