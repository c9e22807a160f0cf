"""Tests of the KSeF simulator (aiohttp and the crypto core only, never our client)."""
