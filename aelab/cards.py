"""Model cards: what each model family is, its loss, its trade-off against the vanilla
autoencoder, and the paper it comes from.

Cards are YAML data shipped in the package (``aelab/cards/<id>.yaml``), one per
registered family plus training modes (denoising) and variants (β-VAE), so the
text can be edited without touching code and a test can check that no family
is missing one. ``cards_for(run)`` picks the cards that describe a given run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from aelab.errors import AelabError, closest

FIELDS = ("id", "title", "kind", "applies", "what", "loss", "advantage", "disadvantage", "paper")
PAPER_FIELDS = ("authors", "year", "title", "venue", "url")
KINDS = ("family", "mode", "variant")


@dataclass(frozen=True)
class Card:
    id: str
    title: str
    kind: str
    """family (a model.type), mode (a way of training any family) or variant (a setting of a family)."""
    applies: str
    what: str
    loss: str
    advantage: str
    disadvantage: str
    paper: dict[str, Any]
    configs: list[str] = field(default_factory=list)
    """Shipped presets (``configs/<name>.yaml``) that use it."""

    @property
    def citation(self) -> str:
        p = self.paper
        return f"{p['authors']} ({p['year']}). {p['title']}. {p['venue']}."

    @property
    def short_ref(self) -> str:
        """'Kingma and Welling 2013' style: first author's surname, 'et al.' past two."""
        names = [a.strip() for a in str(self.paper["authors"]).replace(" and ", ", ").split(",") if a.strip()]
        surnames = [n.split()[-1] for n in names]
        who = surnames[0] if len(surnames) == 1 else " & ".join(surnames) if len(surnames) == 2 else \
            f"{surnames[0]} et al."
        return f"{who} {self.paper['year']}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "citation": self.citation}


def _parse(name: str, text: str) -> Card:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raise AelabError(f"cards/{name}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise AelabError(f"cards/{name}: expected a mapping")
    missing = [k for k in FIELDS if not raw.get(k)]
    if missing:
        raise AelabError(f"cards/{name}: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(FIELDS) - {"configs"})
    if unknown:
        raise AelabError(f"cards/{name}: unknown key '{unknown[0]}'")
    return Card(**{k: (" ".join(v.split()) if isinstance(v, str) else v) for k, v in raw.items()})


@cache
def load_cards() -> dict[str, Card]:
    """Every shipped card by id: the vanilla fcn first, then the other families, modes, variants."""
    folder = files("aelab") / "cards"
    found = [_parse(p.name, p.read_text(encoding="utf-8")) for p in folder.iterdir() if p.name.endswith(".yaml")]
    found.sort(key=lambda c: (KINDS.index(c.kind) if c.kind in KINDS else len(KINDS), c.id != "fcn", c.id))
    return {c.id: c for c in found}


def card(name: str) -> Card:
    """The card called ``name`` (``beta-vae``, ``β-VAE`` and ``beta_vae`` all work)."""
    cards = load_cards()
    key = name.strip().lower().replace("-", "_").replace("β", "beta_").replace("__", "_")
    if key in cards:
        return cards[key]
    raise AelabError(f"no model card '{name}'{closest(key, cards)}; cards: {', '.join(cards)}")


def cards_for(config: Any) -> list[Card]:
    """Cards describing a run or config: its family, then the modes and variants its settings turn on."""
    cfg = getattr(config, "config", config)
    cards = load_cards()
    family = getattr(cfg.model, "type", None)
    chosen = [cards[family]] if family in cards else []
    if family == "vae" and getattr(cfg.model, "beta", 1.0) > 1 and "beta_vae" in cards:
        chosen.append(cards["beta_vae"])
    if getattr(cfg.train, "input_noise", None) is not None and "denoising" in cards:
        chosen.append(cards["denoising"])
    return chosen


def check_cards() -> list[str]:
    """Problems with the shipped cards: a registered family without a card, an incomplete paper, a bad link."""
    from aelab.models import families

    cards = load_cards()
    problems = [f"model family '{f}' has no card" for f in families() if f not in cards]
    for c in cards.values():
        if c.kind not in KINDS:
            problems.append(f"{c.id}: kind '{c.kind}' is not one of {', '.join(KINDS)}")
        problems += [f"{c.id}: paper.{k} is missing" for k in PAPER_FIELDS if not c.paper.get(k)]
        if not str(c.paper.get("url", "")).startswith("https://"):
            problems.append(f"{c.id}: paper.url is not an https link")
    return problems
