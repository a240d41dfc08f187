"""Flask blueprints and glue: the only package that imports Flask."""
