"""Talking to the model: the client, prices, the budget guard before every call, spending caps."""
