"""Tests of the permissions API: client methods against the simulator, the simulator's rules, the CLI."""
