"""Experiment commands: models (the cards), sweep (grids of runs), report (the HTML study)."""

from __future__ import annotations

import typer

from aelab.cli.common import JSON, app, console, print_json, table


@app.command()
def models(
    name: str = typer.Argument(None, help="A card to show in full, e.g. vae, conv, denoising, beta-vae."),
    as_json: bool = JSON,
) -> None:
    """The model cards: what each family is, its loss, its trade-off against the vanilla autoencoder, its paper."""
    from aelab.cards import card, load_cards

    if name is None:
        cards = list(load_cards().values())
        if as_json:
            print_json([c.to_dict() for c in cards])
            return
        table([{"card": c.id, "kind": c.kind, "what": c.title, "reference": c.short_ref} for c in cards],
              title="model cards (aelab models NAME for one)")
        return
    c = card(name)
    if as_json:
        print_json(c.to_dict())
        return
    from rich.markup import escape

    console.print(f"[bold]{escape(c.title)}[/bold]  ({c.kind}: {escape(c.applies)})\n")
    for label, text in (("What it is", c.what), ("Loss", c.loss), ("Advantage over the vanilla AE", c.advantage),
                        ("Disadvantage", c.disadvantage)):
        console.print(f"[bold]{label}[/bold]\n{escape(text)}\n")
    console.print(f"[bold]Reference[/bold]\n{escape(c.citation)}\n{c.paper['url']}")
    if c.configs:
        console.print(f"\n[bold]Shipped configs[/bold]: {', '.join(f'configs/{n}.yaml' for n in c.configs)}")
