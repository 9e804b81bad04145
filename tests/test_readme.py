import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2, "the Quick start has exactly two commands"
    demo, test = commands
    assert demo.endswith("ace demo") and test.endswith("python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_the_readme_is_short_and_docs_hold_the_rest():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 10_000
    for page in ["flags", "python", "results", "models", "working-dir", "prefect", "errors", "differences",
                 "benchmarks", "stability"]:
        assert (ROOT / "docs" / f"{page}.md").is_file() and f"docs/{page}.md" in readme + (ROOT / "docs" / "README.md").read_text().replace("(", "(docs/")


def test_every_link_between_the_docs_resolves():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_users_never_read_of_the_teams_shared_folder():
    """Users have only the repository: nothing outside tests/ and benchmarks/ points into ../shared."""
    import subprocess

    found = []
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        path, rel = ROOT / name, Path(name)
        if (path.is_file() and rel.parts[0] not in ("tests", "benchmarks")
                and path.suffix in (".md", ".py", ".yaml", ".toml", ".txt", "")):
            try:
                if "../shared" in path.read_text():
                    found.append(str(rel))
            except (UnicodeDecodeError, OSError):
                pass
    assert not found, found
