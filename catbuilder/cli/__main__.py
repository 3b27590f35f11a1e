"""``python -m catbuilder.cli``: the command line (``--reference``: docs/cli.md)."""

import sys

from catbuilder.cli.main import main, reference_markdown

if sys.argv[1:] == ["--reference"]:
    sys.stdout.write(reference_markdown())
    sys.exit(0)
sys.exit(main())
