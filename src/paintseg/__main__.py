"""`python -m paintseg` is the same as the `paintseg` command."""

from paintseg.cli import main

main()
