"""LLM synthesis and the QC judge (GPU actors on a cluster).

    ray job submit --working-dir . -- python jobs/synthesize.py [--config FILE] [key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _entry import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(['synthesize', 'qc']))
