"""One module per SFT task; each registers itself with ``@register`` (see ../registry.py)."""
