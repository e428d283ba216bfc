"""``python -m hnm`` is the ``hnm`` command."""
import sys

from .cli import main

sys.exit(main())
