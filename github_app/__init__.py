"""The GitHub adapter: webhooks in, reporting and pull requests out (design.md §1)."""

from github_app.app import GitHubApp
from github_app.code_host import GitHubCodeHost
from github_app.reporter import GitHubReporter

__all__ = ["GitHubApp", "GitHubCodeHost", "GitHubReporter"]
