"""What a person reads about a run: ``report.html`` (:mod:`.html`), TensorBoard logs
(:mod:`.tensorboard`), and the words that describe every key of ``summary.json`` and
``diagnostics.json`` and every figure (:mod:`.keys`, data in ``keys.toml``), shared with the
documentation's run-folder page.

May import: :mod:`pyrovae.folder`, :mod:`pyrovae.recipes` and everything below them. Not
:mod:`pyrovae.runs` or :mod:`pyrovae.cli`: a report is built from a folder's files alone.
"""
