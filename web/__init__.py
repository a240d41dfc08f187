"""Flask blueprints and glue: the web side of Darkroom (``handoff`` is the other package that imports Flask)."""
