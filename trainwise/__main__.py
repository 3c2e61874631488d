"""`python -m trainwise`: the same as the `trainwise` command."""
from .cli import run

run()
