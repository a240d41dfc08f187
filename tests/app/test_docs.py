"""The README describes the tree as it is: its Layout names every part, its Configuration table every default."""

import re
import subprocess
from pathlib import Path

from tests.support import ROOT

PACKAGES = ("web", "handoff", "imaging", "storage", "bench")


def layout() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("## Layout\n", 1)[1].split("```", 2)[1]


def entries() -> dict[str, str]:
    """Each entry of the Layout (a line starting at the margin) with its indented lines after it."""
    found: dict[str, str] = {}
    for line in layout().strip("\n").splitlines():
        if not line.startswith(" "):
            name, _, text = line.partition(" ")
            found[name] = text
        else:
            found[name] += " " + line.strip()
    return found


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_the_layout_names_every_module_of_every_package_in_its_entry():
    described = entries()
    missing = [f"{package}/{path.name}" for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))
               if path.stem not in ("__init__", "__main__")
               and path.stem not in re.findall(r"\w+", described[f"{package}/"])]
    assert not missing, f"README's Layout does not name: {missing}"


def test_the_layout_names_every_top_level_entry_of_the_repository():
    text = layout()
    tops = {path.split("/", 1)[0] + ("/" if "/" in path else "") for path in tracked()}
    quiet = {".gitignore", "LICENSE", "CHANGES.md", "MANIFEST.in", "README.md", ".ci/",
             "requirements-dev.txt", "requirements-bench.txt"}  # named beside what they belong to
    missing = sorted(top for top in tops - quiet if not re.search(rf"(^|\s){re.escape(top)}", text, re.M))
    assert not missing, f"README's Layout does not name: {missing}"
    assert ".ci/run" in text and "-dev" in text and "-bench" in text


def test_the_configuration_table_lists_every_default():
    from web.settings import DEFAULTS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {name for cell in re.findall(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \|", readme, re.MULTILINE)
            for name in re.findall(r"`([A-Z_]+)`", cell)}
    missing = sorted(set(DEFAULTS) - rows)
    assert not missing, f"README's Configuration table does not list: {missing}"


def test_the_layout_names_every_group_of_tests_its_modules_and_the_harness():
    described = entries()["tests/"]
    words = set(re.findall(r"\w+", described))
    files = [Path(path) for path in tracked() if path.startswith("tests/") and path.endswith(".py")]
    groups = sorted({f"{path.parts[1]}/" for path in files if len(path.parts) > 2})
    missing = [group for group in groups if not re.search(rf"(^|\s){re.escape(group)}", described)]
    for path in files:
        if len(path.parts) != 3:
            continue
        if path.parts[1] in ("app", "browser", "system") and path.stem.startswith("test_"):
            named = path.stem.removeprefix("test_")  # test_real_images.py is "real_images"
        elif path.parts[1] == "support" and path.stem != "__init__":
            named = path.stem
        else:
            continue
        if named not in words:
            missing.append(str(path))
    assert not missing, f"README's Layout does not name: {missing}"
