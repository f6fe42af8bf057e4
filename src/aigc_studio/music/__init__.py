"""Symbolic music: the corpus, the token format, constrained composing, rendering and evaluation."""
