"""SFT with Ray Train + DeepSpeed ZeRO (CPU or GPU), checkpointed, resumable, exported as HF.

``run(cfg, input_uri=None, output_uri=None)`` is the stage (see ``stage.py``); the worker
loop is ``loop.py``; DeepSpeed JSON handling ``ds_config.py``; tokenization and packing
``data.py``; the consolidated export ``export.py``.
"""

from .stage import run

__all__ = ["run"]
