"""``python -m diffcmr_core <command>``: see :mod:`diffcmr_core.cli`."""

from diffcmr_core.cli import main

main()
