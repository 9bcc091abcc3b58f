"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class YolohandError(Exception):
    """A user-facing problem: the message names the file, the place and what is wrong."""
