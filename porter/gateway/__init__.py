"""The LLM gateway: agents call their model API through Porter with a run token, and Porter adds
the real key on the way out (routes, providers, auth, proxy; accounting in metering)."""
