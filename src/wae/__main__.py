"""`python -m wae ...` (and `torchrun ... -m wae train ...`): the `wae` command."""

import sys

from .cli import main

sys.exit(main())
