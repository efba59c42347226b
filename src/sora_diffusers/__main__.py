"""`python -m sora_diffusers ...` runs the `sora-diffusers` command line (see `sora_diffusers.cli`)."""

import sys

from .cli import main


if __name__ == "__main__":
    sys.exit(main())
