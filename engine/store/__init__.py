"""The database: tables, migrations, and the job store (submit, transitions, events, reads, costs)."""
