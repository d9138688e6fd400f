"""The toolkit's one error type.

Core modules raise `ToolkitError` (or a subclass) with a message that names the file and says what to do;
only a script's `main()` turns it into a one-line message and an exit code (see `cli.run_script`).
"""


class ToolkitError(Exception):
    """Bad input, a missing file or a mismatch the user must fix; the message is shown as is."""
