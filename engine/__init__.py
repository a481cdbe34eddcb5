"""The core of autodev, shared by every adapter: one subpackage per part of a job's life.

Each layer imports only the layers above it in this list (tests/engine/test_layout.py holds it to that):

    states, errors, views, ports, settings,   the contracts: a job's vocabulary, its read-only snapshots,
    events, logctx, repo_config, redact,      the protocols adapters implement, the one configuration object,
    tracing                                   OpenTelemetry spans (a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT)
    store/       the database: models, migrations, jobs (submit, transitions), the event log, reads, the cost
                 ledger, the web side's group-committing intake, conversations (one job at a time per PR
                 branch, waiting requests folded, CI fix rounds), waits (a job waiting for a person)
    llm/         the model client, prices, the budget guard before every call, spending caps, token estimates
    context/     what the model is shown: the repository's index, ranking, packing to a token budget, memory
    workspace/   git (a mirror per repository, a worktree per job), the guard every edit passes, and running
                 the repository's commands
    agents/      the planner, the coder and its tool box, the AGENTS.md rules, the briefing (context + notes)
    pipeline/    a job's run: claim → prepare → plan → steps (code → test → commit) → publish → end, the
                 operators' actions (cancel, retry), and waiting (a question or a plan's approval)

Adapters (github_app, bot, web, workers) import the engine; the engine never imports them.
"""
