"""Where a job's work happens: git mirrors and worktrees, the edit guard, the repository's commands."""
