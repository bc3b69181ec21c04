"""``python -m keras_vit.train``: the same as ``keras-vit train`` (``keras_vit.cli.train``).

Example:
    >>> from keras_vit.train import main
    >>> import tempfile
    >>> main(["--steps", "30", "--out", tempfile.mkdtemp(), "--quiet"])  # doctest: +ELLIPSIS
    saved .../model.keras and .../model.npz (step 30, ... s)
    weights digest: ...
    held-out accuracy: 0...
    0
"""

from __future__ import annotations

import sys

from keras_vit.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Runs ``keras-vit train``.

    Args:
        argv: the arguments after ``train``; None reads the command line.

    Returns:
        The exit status.
    """
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
