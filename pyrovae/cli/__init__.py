"""The command line: one module per command (``pyrovae-train``, ``pyrovae-diagnose``,
``pyrovae-features``, ``pyrovae-report``), each a thin parser over :mod:`pyrovae.runs` or
:mod:`pyrovae.report`, and :mod:`.common`, the parser whose bad flag is one ``error:`` line.

The top layer: may import anything in pyrovae; nothing imports it.
"""
