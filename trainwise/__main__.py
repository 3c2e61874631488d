"""`python -m trainwise`: the same as the `trainwise` command."""
import sys

from .cli import main

sys.exit(main())
