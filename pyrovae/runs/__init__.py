"""What happens to one run: its programs built from any pair form (:mod:`~pyrovae.runs.programs`,
:mod:`~pyrovae.runs.build`), training (:mod:`~pyrovae.runs.train`), loading it back
(:mod:`~pyrovae.runs.load`), its diagnosis (:mod:`~pyrovae.runs.diagnose`), its posterior
means as features (:mod:`~pyrovae.runs.encoding`, :mod:`~pyrovae.runs.features`) and the
linear probe on them (:mod:`~pyrovae.runs.probe`).

May import: :mod:`pyrovae.report`, :mod:`pyrovae.folder`, :mod:`pyrovae.recipes`, and the
layers below them (``plots``, ``inference``, ``data``, ``models``, ``atomic``, ``errors``);
never :mod:`pyrovae.cli`.
"""
