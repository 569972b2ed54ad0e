"""``aelab demo``'s generation section: sample grids, the AE-vs-VAE same-noise figure, ``aug.npz``."""

from __future__ import annotations

from typing import Any

from aelab.codenoise import augment, compare_noise, select
from aelab.figures.generate import same_noise_figure, samples_figure
from aelab.generate import sample
from aelab.quality import generation_quality, sharpness

DEMO_IDS = "1-5,226-230,841-845,1471-1475"
"""The ids the course reports augmented (five variants each), counted from 1 as the reports do."""


def demo_section(demo: Any) -> list[str]:
    """A sample grid per model, the AE-vs-VAE same-noise figure, the VAE's augmentation of the
    reports' ids as ``aug.npz``, and (full demo only) sample quality."""
    ae, vae = demo.runs["ae"], demo.runs["vae"]
    n = 32 if demo.quick else 64
    lines: list[str] = []
    numbers: dict[str, Any] = {"samples": {}}
    for key, run in (("vae", vae), ("ae", ae)):
        s = sample(run, n, seed=0)
        path = samples_figure(s, run.figures / "samples.png", run.name)
        real = run.preprocess.inverse(run.to_model(run.val_data()))
        numbers["samples"][key] = res = {"figure": str(path), "run": str(run.path), **s.numbers(),
                                         "sharpness": float(sharpness(s.images).mean()),
                                         "sharpness_real": float(sharpness(real).mean())}
        lines.append(f"samples ({key}): {path}  ({res['drawn_from']}; sharpness {res['sharpness']:.4f} "
                     f"vs {res['sharpness_real']:.4f} real)")
    ids, base = (DEMO_IDS, 1) if len(vae.splits.full) >= 1475 else ("0-9", 0)
    aug_a, aug_b, c = compare_noise(ae, vae, select(ae, ids, id_base=base), 5, 0.5, 0, id_base=base)
    c = {"figure": str(same_noise_figure(aug_a, aug_b, c, vae.figures / "same_noise.png")), **c}
    numbers["same_noise"] = c
    a, b = c["a"], c["b"]
    lines.append(f"same noise, AE vs VAE: {c['figure']}  (σ 0.5 = {a['sigma_in_code_std']:.2f} vs "
                 f"{b['sigma_in_code_std']:.2f} code std; PSNR of reconstructions {a['recon_psnr']:.2f} vs "
                 f"{b['recon_psnr']:.2f} dB, of variants {a['psnr']:.2f} vs {b['psnr']:.2f} dB, diversity "
                 f"{a['diversity']:.4f} vs {b['diversity']:.4f})")
    aug = augment(vae, ids, 5, 0.5, 0, id_base=base)
    path = aug.save(demo.out / "aug.npz")[0]
    numbers["augment"] = {"file": str(path), "images": list(aug.images.shape), "ids": ids, "id_base": base,
                          "sigma": 0.5, "seed": 0}
    lines.append(f"augmented data: {path}  ({aug.images.shape[0]} images, load with npz:{path})")
    if not demo.quick:
        numbers["quality"] = {}
        for key, run in (("vae", vae), ("ae", ae)):
            q = generation_quality(run, n=1000)
            numbers["quality"][key] = {k: v for k, v in q.items() if k != "feature_net"}
            lines.append(f"sample quality ({key}): Fréchet distance {q['fd_generated']:.2f} (real vs real "
                         f"{q['fd_train_vs_held_out']:.2f}), sharpness {q['sharpness_ratio_generated']:.2f}× real")
    demo.result["generation"] = numbers
    return lines
