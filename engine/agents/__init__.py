"""The model's roles: the planner, the coder with its tool box, their rules, and what they are briefed."""
