"""Merge with the base, publish with a manifest, evaluate.

    ray job submit --working-dir . -- python jobs/merge_publish.py [--config FILE] [key=value ...]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _entry import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(['merge', 'publish', 'evaluate']))
