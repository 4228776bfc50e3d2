"""The ``netflowgen`` command. Thin: each verb parses its options, calls the library and prints.

One module per family of verbs, in the order of the data flow:

* ``flows``: ingest, inspect, formats, inject, simulate;
* ``model``: series, tokenize, pretrain, nextstep, generate;
* ``detect``: finetune, score;
* ``evaluate``: benchmark, demo;
* ``live``: collect, replay, detect.

``common`` holds what they share: the app, the options every verb spells the same way, one
error and interrupt handler (``failing``), one progress-bar factory, one JSON printer, and
``default``, which reads an option's default from its config dataclass.
"""

from __future__ import annotations

import logging
import sys

# In the order of the data flow, which is the order `netflowgen --help` lists them in.
from netflowgen.cli import flows, model, detect, evaluate, live  # noqa: F401,I001  (each registers its verbs)
from netflowgen.cli.common import app

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
