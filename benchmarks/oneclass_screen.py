"""Choose a one-class score mix without the test labels: validation AUROC on training data only.

For each class run of a one-class study (``aelab.oneclass`` OUT folder, trained with a
validation split, e.g. ``data.val_fraction=0.1``), the held-out normal images are ranked
against ``--others`` training images of the other classes (a seeded draw); that
*validation* AUROC is what a mix is chosen by. The test AUROC is printed beside it for
the record only. Mixes are means of z-scores, with the mean and std of each part on the
held-out normal images (what the ``normalised`` kind does). Several studies make an ensemble:
each model's mix is z-scored on its own statistics and the models' mixes are averaged; their
runs must hold out the same normal images (same ``data.split_seed``), or the validation
AUROC would count images some members trained on.

    .venv/bin/python benchmarks/oneclass_screen.py runs/bench-oneclass/fashion/oneclass.yaml+val --normal 6,2,8
    .venv/bin/python benchmarks/oneclass_screen.py STUDY_SEED0 STUDY_SEED1 --mixes mse,ssim+latent+knn
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

MIXES = [("mse",), ("ssim",), ("latent",), ("knn",), ("knn20",), ("mse_flip",), ("mse", "latent"), ("mse", "knn"),
         ("mse", "ssim", "latent"), ("mse", "latent", "knn"), ("mse", "ssim", "latent", "knn"), ("ssim", "latent"),
         ("ssim", "knn"), ("ssim", "latent", "knn")]


def parts(run, images: np.ndarray, wanted: set[str]) -> dict[str, np.ndarray]:
    """The candidate parts in ``wanted`` for ``images`` (uint8 N×H×W×C)."""
    from aelab.anomaly import components
    from aelab.scorenorm import knn_distance, reference_codes

    out = components(run, images, tuple(k for k in ("mse", "ssim", "latent", "knn") if k in wanted))
    if "mse_flip" in wanted:
        flipped = components(run, images[:, :, ::-1].copy(), ("mse",))["mse"]
        out["mse_flip"] = (components(run, images, ("mse",))["mse"] + flipped) / 2
    if "knn20" in wanted:
        codes = torch.from_numpy(run.encode(images))
        out["knn20"] = knn_distance(codes, reference_codes(run), k=20).double().numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, nargs="+",
                    help="aelab.oneclass OUT folder(s) whose runs have a validation split; several: an ensemble")
    ap.add_argument("--mixes", default=None, help="comma-separated mixes of parts joined by +, e.g. "
                    "mse,ssim+latent+knn (default: the table's list)")
    ap.add_argument("--normal", default=None, help="only these classes, e.g. 6,2,8")
    ap.add_argument("--others", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import json

    import aelab
    from aelab.rankmetrics import metrics

    mixes = [tuple(m.split("+")) for m in args.mixes.split(",")] if args.mixes else MIXES
    needed = {k for m in mixes for k in m}
    summary = json.loads((args.study[0] / "oneclass.json").read_text())
    full = aelab.load_images(summary["data"])
    test = full.test
    wanted = [int(c) for c in args.normal.split(",")] if args.normal else [r["normal"] for r in summary["rows"]]
    rng = np.random.default_rng(0)
    rows: dict[tuple[str, ...], list[tuple[float, float]]] = {m: [] for m in mixes}
    train_s = []
    for c in wanted:
        runs = [aelab.load_run(s / f"class-{c}") for s in args.study]
        if runs[0].splits.val is None:
            raise SystemExit(f"{runs[0].path}: no validation split (train with data.val_fraction > 0)")
        val = runs[0].splits.val.batch()
        for run in runs[1:]:
            if run.splits.val is None or not np.array_equal(run.splits.val.batch(), val):
                raise SystemExit(f"{run.path}: holds out other normal images than {runs[0].path} (data.split_seed)")
        train_s.append(sum(run.summary["wall_time_s"] for run in runs))
        others = np.sort(rng.choice(np.flatnonzero(full.get_labels() != c), args.others, replace=False))
        sets = {"val": (np.concatenate([val, full.batch(others)]), np.r_[np.zeros(len(val)), np.ones(args.others)]),
                "test": (test.batch(), test.get_labels() != c)}
        mixed = {mix: {s: 0.0 for s in sets} for mix in mixes}
        for run in runs:
            scored = {k: parts(run, x, needed) for k, (x, _) in sets.items()}
            ref = {k: (v[:len(val)].mean(), v[:len(val)].std()) for k, v in scored["val"].items()}
            for mix in mixes:
                for s in sets:
                    mixed[mix][s] = mixed[mix][s] + sum((scored[s][k] - ref[k][0]) / ref[k][1] for k in mix)
        for mix in mixes:
            rows[mix].append(tuple(metrics(mixed[mix][s], sets[s][1])["roc_auc"] for s in ("val", "test")))
    print(f"studies: {', '.join(map(str, args.study))}; training s/class (all members): "
          + ", ".join(f"{c}: {s:.0f}" for c, s in zip(wanted, train_s, strict=True)))
    print("| score (z-scored on held-out normals, averaged) | "
          + " | ".join(f"{c} val | {c} test" for c in wanted) + " | mean val | mean test |")
    print("| --- |" + " ---: |" * (2 * len(wanted) + 2))
    for mix, aucs in rows.items():
        a = np.array(aucs)
        cells = " | ".join(f"{v:.3f} | {t:.3f}" for v, t in a)
        print(f"| {' + '.join(mix).replace('_flip', ' (flip TTA)')} | {cells} | {a[:, 0].mean():.3f} | "
              f"{a[:, 1].mean():.3f} |")


if __name__ == "__main__":
    main()
