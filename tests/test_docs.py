"""The user documentation: links resolve, and nothing points at files a user does not have."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).is_file(), (page.name, target)


def test_the_readme_links_every_docs_page() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, page.name


def test_no_reference_to_files_outside_the_repository() -> None:
    sources = [*PAGES, *REPO_ROOT.glob("lpzero_queue/**/*.py"), *REPO_ROOT.glob("scripts/*.py")]
    for path in sources:
        text = path.read_text()
        assert "shared/" not in text, path
        if path.parent.name != "docs":
            # The design notes are docs/*.md: a bare name points at a file the user lacks.
            bare = re.findall(r"(?<![\w/])(?:method|benchmarks)\.md", text)
            assert not bare, (path, bare)
