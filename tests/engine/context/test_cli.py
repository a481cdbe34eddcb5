import json
from pathlib import Path

import pytest

from autodev.cli import build_parser
from autodev.cmd_context import main
from autodev.cmd_eval import main_eval
from engine.settings import Settings
from tests.conftest import make_settings

from .conftest import commit, git, make_repo

REPO_FILES = {
    "src/auth/login.py": "def check_password(user, password):\n    return user.hash == password\n",
    "src/billing/invoice.py": "def total_invoice(lines):\n    return sum(lines)\n",
    "src/billing/tax.py": "def vat_rate(country):\n    return 0.2\n",
    "README.md": "# Shop\n\nA shop with login and invoices.\n",
}


@pytest.fixture
def cli_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def _dataset(tmp_path: Path) -> Path:
    make_repo(tmp_path / "repos" / "shop", REPO_FILES)
    lines = [
        {
            "instance_id": "i1",
            "repo_dir": "shop",
            "query": "login fails: check_password",
            "gold_files": ["src/auth/login.py"],
        },
        {
            "instance_id": "i2",
            "repo_dir": "shop",
            "query": "invoice total is wrong",
            "gold_files": ["src/billing/invoice.py"],
        },
        {"instance_id": "i3", "repo_dir": "shop", "query": "nothing matches zzz", "gold_files": ["src/x.py"]},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_eval_localization_prints_recall_and_mrr_and_writes_rankings(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path)
    out = tmp_path / "ranked.jsonl"
    args = build_parser().parse_args(
        ["eval-localization", str(dataset), "--repos", str(tmp_path / "repos"), "--out", str(out)]
    )
    assert main_eval(args, cli_settings) == 0
    printed = capsys.readouterr().out
    assert "instances 3  recall@1 0.667  recall@5 0.667  recall@10 0.667  MRR 0.667" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["instance_id"] for r in rows] == ["i1", "i2", "i3"]
    assert rows[0]["ranked_files"][0] == "src/auth/login.py"
    assert rows[1]["ranked_files"][0] == "src/billing/invoice.py"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json\n", "data.jsonl:1: not JSON"),
        ('{"instance_id": "a"}\n', "data.jsonl:1: needs instance_id"),
    ],
)
def test_eval_localization_names_the_bad_line(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (tmp_path / "data.jsonl").write_text(content)
    args = build_parser().parse_args(["eval-localization", str(tmp_path / "data.jsonl"), "--repos", "."])
    assert main_eval(args, cli_settings) == 2
    assert message in capsys.readouterr().err


def test_eval_localization_refuses_a_missing_repo_dir(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = _dataset(tmp_path)
    args = build_parser().parse_args(["eval-localization", str(dataset), "--repos", str(tmp_path)])
    assert main_eval(args, cli_settings) == 2
    assert "no such repo_dir" in capsys.readouterr().err


def test_context_command_prints_the_pack_with_scores(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "shop", REPO_FILES)
    args = build_parser().parse_args(
        ["context", "--repo", str(repo), "--budget", "800", "vat_rate for Norway"]
    )
    assert main(args, cli_settings) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("# ") and "of 800 tokens" in printed.splitlines()[0]
    assert "src/billing/tax.py (lines 1-2)  [defines vat_rate]" in printed
    assert "def vat_rate(country):" in printed


def test_context_command_refuses_a_missing_repo(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(["context", "--repo", str(tmp_path / "nope"), "q"])
    assert main(args, cli_settings) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_eval_localization_checks_out_each_commit_and_reports_per_language(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An instance with a commit is ranked on that commit's tree, and the groups are reported."""
    repo = make_repo(tmp_path / "repos" / "shop", REPO_FILES)
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "src/billing/tax.py")
    commit(repo, "drop tax")
    lines = [
        {"instance_id": "a", "repo_dir": "shop", "commit": first, "language": "python", "repo": "acme/shop",
         "query": "vat_rate for Norway", "gold_files": ["src/billing/tax.py"]},
        {"instance_id": "b", "repo_dir": "shop", "language": "go", "repo": "acme/shop",
         "query": "check_password compares hashes", "gold_files": ["src/auth/login.py"]},
    ]  # fmt: skip
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = build_parser().parse_args(["eval-localization", str(dataset), "--repos", str(tmp_path / "repos")])
    assert main_eval(args, cli_settings) == 0
    printed = capsys.readouterr().out
    assert "instances 2  recall@1 1.000" in printed
    assert any(line.split()[:3] == ["go", "1", "1.000"] for line in printed.splitlines())
    assert any(line.split()[:3] == ["python", "1", "1.000"] for line in printed.splitlines())


def test_eval_localization_reports_the_two_halves_of_the_dataset(
    tmp_path: Path, cli_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Odd and even lines of the dataset, each scored alone: a change kept should hold on both."""
    dataset = _dataset(tmp_path)  # lines 1 and 3 (odd): one found first, one not found; line 2 (even): found
    args = build_parser().parse_args(["eval-localization", str(dataset), "--repos", str(tmp_path / "repos")])
    assert main_eval(args, cli_settings) == 0
    rows = {line.split()[0]: line.split()[1:5] for line in capsys.readouterr().out.splitlines() if line}
    assert rows["odd"] == ["2", "0.500", "0.500", "0.500"]
    assert rows["even"] == ["1", "1.000", "1.000", "1.000"]
