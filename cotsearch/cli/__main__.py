"""`python -m cotsearch.cli`: the same as the `cotsearch` command."""

from cotsearch.cli import main

main()
