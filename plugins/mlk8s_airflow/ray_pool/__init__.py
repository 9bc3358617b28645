"""The Ray pool loop and what it is made of: its settings, the join of pool members with Ray's view, and the
time series the UI plots. The sensor and its trigger (``sensors/``, ``triggers/``) run it."""
