"""An aiohttp invoicing service on ksef-async (see app.py)."""
