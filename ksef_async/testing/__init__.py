"""Test support shipped for users' own CI: the KSeF simulator, an invoice factory and a pytest plugin."""
