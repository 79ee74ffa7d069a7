"""`python -m fecsearch.cli` runs the command line, as `fecsearch` and `python -m fecsearch` do."""
from fecsearch.cli import main

main()
