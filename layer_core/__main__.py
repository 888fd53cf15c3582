"""`python -m layer_core` runs the `layer` command."""

from layer_core.script import main

main()
