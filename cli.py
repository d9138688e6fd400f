"""Command-line pieces shared by every script: flag groups (one spelling per flag) and the wrapper that
turns a `ToolkitError` into a one-line message and exit code 2."""
import sys

from errors import ToolkitError


def run_script(main, argv=None):
    """Call `main(argv)`; a ToolkitError becomes `error: <message>` on stderr and exit code 2."""
    try:
        return main(argv)
    except ToolkitError as e:
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None


# ================================================================ common flags (data, device, normalisation)


# ================================================================ MSCR flags (training.py / testing.py --model mscr)
