"""The README and the docs against the code: every command shown names something that exists (an entry point, a
make target, a script, a config group option or setting), and the README's parameter counts are the code's."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from helpers import CONF, PROJECT

PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
GROUPS = {p.name for p in CONF.iterdir() if p.is_dir()}
MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (PROJECT / "Makefile").read_text(), re.M))


def commands(page: Path) -> list[str]:
    """The shell commands of a page's ``bash`` code blocks (the others show output), continuation lines joined."""
    found, block, lines = [], None, page.read_text().splitlines()
    for line in lines:
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
            continue
        if block in ("bash", "sh") and line.strip():
            found.append(line)
    joined = []
    for line in found:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    return [c.split(" # ", 1)[0].split("  #", 1)[0].strip() for c in joined if not c.startswith("#")]


def config_for(module: str, groups: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        name = "evaluate" if module == "trainer.evaluate" else "train"
        return compose(config_name=name, overrides=groups, return_hydra_config=True)


def check_trainer_overrides(module: str, words: list[str]) -> list[str]:
    """The problems of a ``python -m trainer[.evaluate] ...`` line's overrides."""
    problems, groups, keys = [], [], []
    for word in words:
        if word.startswith("-") or "=" not in word or "<" in word.split("=", 1)[0]:
            continue
        key, value = word.lstrip("+~").split("=", 1)
        if key in GROUPS or key.startswith("hydra/"):
            folder = CONF / key
            options = {p.stem for p in folder.glob("*.yaml")}
            if "," not in value and value not in options:
                problems.append(f"{key}={value}: no conf/{key}/{value}.yaml")
            elif "," not in value:
                groups.append(f"{key}={value}")
        elif not word.startswith("+"):
            keys.append(key)
    if problems:
        return problems
    cfg = config_for(module, groups)
    missing = object()
    for key in keys:
        if key.startswith("hydra.") and OmegaConf.select(cfg, key, default=missing) is missing:
            problems.append(f"{key}: not a Hydra setting")
        elif not key.startswith("hydra.") and OmegaConf.select(cfg, key, default=missing) is missing:
            problems.append(f"{key}: not a setting of the composed config ({' '.join(groups) or 'defaults'})")
    return problems


def check(command: str) -> list[str]:
    try:
        words = shlex.split(command)
    except ValueError:
        return [f"cannot be split as a shell command: {command}"]
    if not words:
        return []
    if words[0] == "make":
        return [f"make {t}: no such target" for t in words[1:2] if "=" not in t and t not in MAKE_TARGETS]
    if words[0] in ("sbatch", "srun"):
        scripts = [w for w in words if w.startswith("slurm/")]
        return [f"{s}: no such script" for s in scripts if not (PROJECT / s).is_file()]
    if words[0] in ("python", "python3", "torchrun") or words[0].endswith("/python"):
        if "-m" not in words:
            return [f"{w}: no such file" for w in words[1:2] if w.endswith(".py") and not (PROJECT / w).is_file()]
        module = words[words.index("-m") + 1]
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                module.split(".")[0] in ("trainer", "models", "data_pipelines") and
                importlib.util.find_spec(module) is None):
            return [f"python -m {module}: no such module"]
        if module in ("trainer", "trainer.evaluate"):
            return check_trainer_overrides(module, words[words.index("-m") + 2:])
    return []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_names_something_that_exists(page):
    shown = commands(page)
    problems = {c: p for c in shown if (p := check(c))}
    assert not problems, problems
    if page.name in ("README.md", "cluster.md", "data.md", "runs.md", "speed.md"):
        assert shown  # the pages with commands still have them


def test_the_readmes_parameter_counts_are_the_codes():
    from models.catalogue import CATALOGUE

    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| ([\d,]+)", (PROJECT / "README.md").read_text(), re.M)
    assert {name for name, _ in rows} == set(CATALOGUE)
    for name, count in rows:
        assert int(count.replace(",", "")) == CATALOGUE[name].params, name


def test_a_command_that_names_nothing_is_caught():
    assert check("python -m trainer trainer.max_epoch=1")  # the check itself can fail
    assert check("python -m trainer model=alexnett")
    assert check("make gpu-chek") and check("python -m trainer.evaluat") and check("sbatch slurm/nope.sh")
    assert not check("python -m trainer model=alexnet strategy=two_gpu_split trainer.devices=8")


def test_the_built_manual_works_opened_from_its_files(tmp_path):
    """`make docs` names build/docs/index.html: opened from disk (file://), every link and asset of every page must
    be a file that exists (with directory URLs a link opened a folder listing in the browser)."""
    import subprocess
    import sys
    from urllib.parse import unquote

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
                   cwd=PROJECT, check=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    # 404.html is a server's page for a missing address (its links are absolute on purpose), never opened from disk
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    assert len(pages) > 10 and (site / "index.html").exists()
    home = (site / "index.html").read_text()  # the README's two commands and first tour, from the README itself
    assert '<h2 id="two-commands">Two commands' in home
    assert '<h2 id="a-first-tour-a-minute-each-on-a-cpu">A first tour, a minute each on a CPU' in home
    assert "make test" in home and "README quickstart" not in home
    broken = []
    for page in pages:
        for target in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            if re.match(r"^(?:[a-z]+:|#|//)", target):  # another site, an anchor, mailto:
                continue
            path = (page.parent / unquote(target.split("#")[0].split("?")[0])).resolve()
            if not path.is_file():
                broken.append(f"{page.relative_to(site)} -> {target}")
    assert broken == [], broken[:20]


def test_every_list_in_the_manual_is_set_off_from_the_paragraph_before_it():
    """Python-Markdown (MkDocs) renders a list that follows a paragraph line without a blank line as that
    paragraph's text ("writes: - report.md ..." on one line): seen on "Reproducing the papers"."""
    glued = []
    for page in sorted((PROJECT / "docs").glob("*.md")):
        previous, fence = "", False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith("```"):
                fence = not fence
            if (not fence and re.match(r"^(- |\d+\. )", line) and previous.strip()
                    and not re.match(r"^(\s*- |\s*\d+\. |\s+\S|\||#)", previous)):
                glued.append(f"{page.name}:{number}")
            previous = line
    assert glued == []
