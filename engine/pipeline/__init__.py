"""A job's run from claim to its end: prepare, plan, steps, publish; and the operators' actions."""
