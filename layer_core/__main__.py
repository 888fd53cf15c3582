"""`python -m layer_core` runs the `layer` command."""

from layer_core.cli import main

main()
