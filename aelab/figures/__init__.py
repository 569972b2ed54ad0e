"""Figures: drawing from analysis results, never from a model.

One module per analysis (``run``, and the analyses' own modules as they move here);
``base`` holds the headless matplotlib helpers every figure uses. Nothing here
imports matplotlib until a figure is drawn, so the API loads fast.
"""
