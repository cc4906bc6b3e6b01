"""Built-in interactors: user × item → score (the design's formulas 4.1 and 4.2)."""
