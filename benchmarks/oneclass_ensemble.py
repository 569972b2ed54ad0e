"""Average the per-image scores of several one-class studies (models trained with other seeds) and measure them.

Each STUDY is an ``aelab.oneclass`` OUT folder scored with the same per-image kind (e.g.
``normalised``, whose scores are on one scale across models: z-scores on each model's own
held-out normals); ``class-<c>/scores.csv`` holds the last kind scored. The studies must
share the test set (a source with its own test split, or the same split seed).

    .venv/bin/python benchmarks/oneclass_ensemble.py runs/bench-oneclass/fashion/oneclass.yaml+val \
        runs/bench-oneclass/fashion/oneclass.yaml+val+seed1
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    return np.array([int(r["ID"]) for r in rows]), np.array([float(r["score"]) for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", type=Path, nargs="+")
    args = ap.parse_args()
    import aelab
    from aelab.rankmetrics import metrics

    summaries = [json.loads((s / "oneclass.json").read_text()) for s in args.studies]
    kinds = {s["kind"] for s in summaries}
    if len(kinds) != 1 or kinds & {"combined"}:
        raise SystemExit(f"the studies were scored with {sorted(kinds)}; one per-image kind is needed")
    test = aelab.load_images(summaries[0]["data"]).test
    labels = test.get_labels()
    print("| normal class | " + " | ".join(s.name for s in args.studies) + " | mean of scores |")
    print("| ---: |" + " ---: |" * (len(args.studies) + 1))
    table = []
    for row in summaries[0]["rows"]:
        c = row["normal"]
        scores = []
        for s in args.studies:
            ids, sc = read_scores(s / f"class-{c}" / "scores.csv")
            if not np.array_equal(ids, np.arange(len(labels))):
                raise SystemExit(f"{s}/class-{c}/scores.csv does not hold one score per test image in order")
            scores.append(sc)
        aucs = [metrics(sc, labels != c)["roc_auc"] for sc in scores] + [
            metrics(np.mean(scores, axis=0), labels != c)["roc_auc"]]
        table.append(aucs)
        print(f"| {c} | " + " | ".join(f"{a:.3f}" for a in aucs) + " |")
    print("| mean | " + " | ".join(f"**{a:.4f}**" for a in np.mean(table, axis=0)) + " |")


if __name__ == "__main__":
    main()
