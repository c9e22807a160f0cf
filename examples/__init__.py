"""Runnable examples of ksef-async."""
