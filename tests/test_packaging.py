import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_lists_pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "- pip:")
    listed = {ln.strip()[2:].strip() for ln in lines[start + 1 :] if ln.strip().startswith("- ")}
    listed = _names(ln for ln in listed if not ln.startswith("-e"))
    assert listed == wanted


def _committed_text(path):
    """The notebook as it goes into git: the index's copy in a git checkout (a notebook explored
    in JupyterLab keeps its outputs in the work tree), else the file."""
    import shutil
    import subprocess

    if shutil.which("git") and (ROOT / ".git").exists():
        rel = path.relative_to(ROOT).as_posix()
        out = subprocess.run(
            ["git", "-C", str(ROOT), "show", f":{rel}"], capture_output=True, text=True
        )
        if out.returncode == 0:
            return out.stdout
    return path.read_text()


def test_notebooks_are_valid_committed_without_outputs_and_parameterised():
    """Every notebook, as committed, validates against the nbformat schema (cell ids included),
    has no outputs or execution counts, starts with a markdown cell and has exactly one cell
    tagged ``parameters``."""
    import warnings

    import nbformat

    books = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(books) == 11  # 01-10, and the lesson (11_teaching)
    for path in books:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nb = nbformat.reads(_committed_text(path), as_version=4)
            nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown", path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def test_git_strips_notebook_outputs_on_commit(tmp_path):
    """`make` points .gitattributes' nbstripout filter at the venv: a notebook saved with outputs
    and JupyterLab's metadata (as it autosaves it) goes into git as the committed file."""
    import shutil
    import subprocess
    from pathlib import Path

    import nbformat
    import pytest

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args, **kw):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, **kw)

    assert (
        git("check-attr", "filter", "--", "notebooks/04_evaluation.ipynb")
        .stdout.strip()
        .endswith("filter: nbstripout")
    )
    clean = git("config", "--get", "filter.nbstripout.clean").stdout.strip()
    assert clean, "the nbstripout filter is not configured: run `make install`"
    committed = _committed_text(root / "notebooks" / "04_evaluation.ipynb")
    nb = nbformat.reads(committed, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="explored\n")]
    # the kernel JupyterLab runs it with names itself as the committed file does
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(nb.metadata.kernelspec.name)
    assert nb.metadata.kernelspec.display_name == spec.display_name
    # what JupyterLab 4 adds on save: the kernel's language_info, the widgets' state
    nb.metadata["language_info"] = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "pygments_lexer": "ipython3",
        "version": "3.11.7",
    }
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    saved = nbformat.writes(nb)
    assert "explored" in saved
    out = subprocess.run(clean, shell=True, input=saved, capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout == committed


def test_jupyter_save_hook_keeps_git_status_clean(tmp_path):
    """Git lists a notebook whose size changed as modified without running the clean filter;
    the post-save hook that `make` installs for JupyterLab records the new size when the
    filtered content is unchanged, and leaves a real edit unstaged and visible."""
    import runpy
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import nbformat
    import pytest
    from traitlets.config import Config

    if shutil.which("git") is None:
        pytest.skip("no git")
    root = Path(__file__).resolve().parents[1]
    config = Config()
    hook_file = root / "jupyter" / "jupyter_server_config.py"
    runpy.run_path(str(hook_file), init_globals={"get_config": lambda: config})
    hook = config.FileContentsManager.post_save_hook
    assert callable(hook)

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    git(
        "config",
        "filter.nbstripout.clean",
        f"'{sys.executable}' -m nbstripout --keep-id --extra-keys metadata.language_info",
    )
    git("config", "filter.nbstripout.smudge", "cat")
    (repo / ".gitattributes").write_text("*.ipynb filter=nbstripout\n")
    path = repo / "a.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("print(1)", id="c1")]
    nbformat.write(nb, path)
    git("add", ".")
    git("commit", "-qm", "notebook")

    # saved after a run: outputs, a count and language_info, so a different size
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 1
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nbformat.write(nb, path)
    assert git("status", "--porcelain").strip() == "M a.ipynb"  # what git alone says
    assert git("diff").strip() == ""
    hook({"type": "notebook"}, str(path), None).join()
    assert git("status", "--porcelain").strip() == ""
    assert "outputs" in path.read_text() and '"1\\n"' in path.read_text()  # file untouched

    # a real edit is neither hidden nor staged
    nb.cells[0].source = "print(2)"
    nbformat.write(nb, path)
    hook({"type": "notebook"}, str(path), None).join()
    assert git("status", "--porcelain").strip() == "M a.ipynb"
    assert git("diff", "--cached").strip() == ""
    # saved again with a real change while the hook ran: git add staged it, the hook unstages it
    nb.cells[0].source = "print(1)"
    nbformat.write(nb, path)
    real_run = hook.__globals__["subprocess"].run

    class EditDuringAdd:  # the subprocess module, editing the file before `git add`
        SubprocessError = subprocess.SubprocessError

        @staticmethod
        def run(args, **kw):
            if "add" in args:
                nb.cells[0].source = "print(3)"
                nbformat.write(nb, path)
            return real_run(args, **kw)

    hook.__globals__["subprocess"] = EditDuringAdd
    try:
        hook({"type": "notebook"}, str(path), None).join()
    finally:
        hook.__globals__["subprocess"] = subprocess
    assert git("diff", "--cached").strip() == ""
    assert git("status", "--porcelain").strip() == "M a.ipynb"
    # files that are not notebooks, or not tracked, are left alone
    assert hook({"type": "file"}, str(repo / ".gitattributes"), None) is None
    hook({"type": "notebook"}, str(tmp_path / "elsewhere.ipynb"), None).join()


def test_no_function_of_the_package_runs_over_sixty_lines():
    """The house rule, checked on the source: every function and method of ``diffcmr_core``
    (decorators and docstring included) fits in 60 lines."""
    import ast

    root = Path(__file__).parents[1] / "diffcmr_core"
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    assert not long, "functions over 60 lines: " + ", ".join(long)


def _code_lines(path):
    """The code of a module or a notebook's code cells, without comments and docstrings."""
    import ast
    import json

    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    else:
        text = path.read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a notebook's magics
        return [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    strings = {
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(getattr(n, "value", None), ast.Constant)
    }
    return [
        ln
        for i, ln in enumerate(text.splitlines(), start=1)
        if i not in strings and not ln.lstrip().startswith("#")
    ]


def test_only_the_run_layout_spells_a_path_under_runs():
    """Every path under runs/<profile>/ comes from study/settings/layout.py (the report included):
    no
    module or notebook builds one from the run folder by hand."""
    pattern = re.compile(r"\.runs\s*/|\bruns\s*/\s*[\"']|[\"']runs[\"']")
    allowed = {ROOT / "diffcmr_core/study/settings/layout.py"}
    offenders = []
    for path in [*ROOT.glob("diffcmr_core/**/*.py"), *ROOT.glob("notebooks/*.ipynb")]:
        if path in allowed:
            continue
        for line in _code_lines(path):
            if pattern.search(line) and "def runs" not in line:
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == [
        'diffcmr_core/study/settings/profiles.py: return self.root / "runs" / self.profile'
    ]


def test_the_run_layout_puts_every_path_under_the_run_folder(tmp_path):
    from diffcmr_core.study.settings.layout import STEP_CACHES, RunLayout

    layout = RunLayout(tmp_path / "runs" / "p")
    paths = [
        layout.model("cine", 4, "unet"),
        layout.crop_model("cine", 4),
        layout.method_cache("cs"),
        layout.calibration,
        layout.challenge_files("raw"),
        layout.submission("raw", "ValidationSet"),
        layout.notebooks,
        layout.scratch_figures("06_figures_1_2", "defaults"),
        *(layout.cache(kind, "cine", 4) for kind in STEP_CACHES),
    ]
    assert all(p.is_relative_to(layout.root) for p in paths)
    assert len(set(paths)) == len(paths)
    assert layout.model("cine", 4, "unet").name == "cine_acc04_unet"
    assert RunLayout(layout.root, shared_models=True).model("cine", 8, "unet").name == (
        "cine_accall_unet"
    )
    for kind in STEP_CACHES:  # the report finds exactly the caches the steps write
        made = layout.cache(kind, "mapping", 10)
        made.parent.mkdir(parents=True, exist_ok=True)
        made.write_text("{}")
        assert layout.step_caches(kind) == [made]
        made.unlink()


def test_an_executed_copy_run_again_does_not_publish(tmp_path, monkeypatch, capsys):
    """``start(profile, publish=True)`` writes to ``figures/<profile>/`` only inside ``make
    study``'s runner (``PUBLISHING`` set); an executed copy from ``runs/`` run again by hand
    carries ``publish = True`` and must go to its own scratch folder."""
    from diffcmr_core.study.lab.notebook import PUBLISHING, start
    from diffcmr_core.study.settings.profiles import get_profile, paths_for

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    monkeypatch.delenv(PUBLISHING, raising=False)
    published = paths_for(get_profile("smoke")).figures
    _, paths = start("smoke", True, "06_figures_1_2", case=1)
    assert paths.figures != published and paths.figures.is_relative_to(tmp_path / "runs")
    assert "not to figures/" in capsys.readouterr().out
    monkeypatch.setenv(PUBLISHING, "1")
    assert start("smoke", True, "06_figures_1_2", case=1)[1].figures == published
    assert start("smoke", False, "06_figures_1_2", case=1)[1].figures != published
