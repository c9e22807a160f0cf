"""testing/simulator."""
