"""Posterior diagnostics for any model/guide pair, read from traces of the two programs."""
