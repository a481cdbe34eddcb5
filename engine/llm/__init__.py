"""Talking to the model: the client (chat and embeddings), prices and per-model parameters, the budget guard
before every request, the billing of what came back, spending caps."""
