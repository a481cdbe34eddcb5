"""Real git repositories in a temp dir for the context engine's tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    return done.stdout.strip()


def write(repo: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)


def commit(repo: Path, message: str = "change") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    write(root, files)
    commit(root, "initial")
    return root


SAMPLE = {
    "billing/invoice.py": (
        '"""Invoices."""\n\nTAX_RATE = 0.2\n\n\nclass InvoiceBuilder:\n    def add_line(self, amount):\n'
        "        self.lines.append(amount)\n\n    def total_amount(self):\n"
        "        return sum(self.lines)\n\n\n"
        "def render_invoice(invoice):\n    return f'Invoice {invoice}'\n"
    ),
    "billing/payment.py": (
        "import stripe\n\n\ndef charge_card(card, amount):\n    # charge the customer's card\n"
        "    return stripe.charge(card, amount)\n\n\ndef refund_payment(payment_id):\n    return payment_id\n"
    ),
    "web/static/app.js": (
        "export function renderCart(items) {\n  return items.map(i => i.name);\n}\n\n"
        "class CartView {\n  constructor() {}\n}\n\nconst fetchOrders = async (user) => {\n  return [];\n};\n"
    ),
    "server/main.go": (
        "package main\n\nfunc handleLogin(w http.ResponseWriter) {\n}\n\ntype Session struct {\n}\n"
    ),
    "docs/guide.md": "# Guide\n\nHow to pay.\n\n## Refunds\n\nRefund a payment from the admin page.\n",
    "assets/logo.png": "\x89PNG\x00\x00binary",
    "data/blob.dat": "header\x00\x01\x02",
}


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", SAMPLE)
