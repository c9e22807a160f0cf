"""Offline mode and technical corrections against the simulator."""
