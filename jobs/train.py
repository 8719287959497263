"""Build the SFT tasks and train with Ray Train + DeepSpeed ZeRO.

    ray job submit --working-dir . -- python jobs/train.py [--config FILE] [key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _entry import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(['build-tasks', 'train']))
