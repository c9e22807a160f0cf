"""Protocol logic with no I/O: crypto, identifiers, zip/split/encrypt pipeline, rate-limit arithmetic."""
