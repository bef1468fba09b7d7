"""`python -m rnncap` is the `rnncap` command."""

from rnncap.cli import main

raise SystemExit(main())
