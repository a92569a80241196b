"""JupyterLab settings of the study, installed by `make` into .venv/etc/jupyter/.

Notebooks go into git without their outputs (the nbstripout filter that .gitattributes names and
`make` configures). Git alone still lists a notebook JupyterLab saved as modified: when a file's
size differs from the one the index recorded, `git status` says "modified" without running the
filter (kynan/nbstripout#65), even though `git diff` is empty. After each save this hook asks git
whether the saved file, through its filters, is exactly what the index holds, and if so records
the file's new size and time in the index (`git add` of identical content: nothing is staged).
A notebook whose code or text changed is left alone and shows as modified, as it should.
Standard library only: the server does not import the study (nor torch).
"""

import os
import subprocess
import threading
import warnings


def refresh_git_stat(model, os_path, contents_manager=None, **kwargs):
    """FileContentsManager.post_save_hook: make `git status` agree with `git diff` for a saved
    notebook whose filtered content is unchanged. Git runs the filter (a second or two), so the
    work goes to a background thread and the save returns at once; the thread is returned (a
    test joins it). Never raises: a save must not fail on git."""
    if model.get("type") != "notebook":
        return None
    thread = threading.Thread(
        target=_refresh,
        args=(os.path.abspath(os_path), contents_manager),
        name="git-stat-refresh",
        daemon=True,
    )
    thread.start()
    return thread


_LOCK = threading.Lock()


def _refresh(os_path, contents_manager):
    folder = os.path.dirname(os_path)

    def git(*args):
        return subprocess.run(
            ["git", "-C", folder, *args], capture_output=True, text=True, timeout=120
        )

    def staged():
        """(mode, blob, path) of the file's index entry, or None when git does not track it."""
        out = git("ls-files", "--stage", "--", os_path).stdout.strip()
        if "\t" not in out:
            return None
        meta, path = out.split("\t", 1)
        mode, blob, _stage = meta.split()
        return mode, blob, path

    try:
        entry = staged()
        if entry is None:  # not tracked, or not in a git work tree
            return
        # the saved file as git would store it (the clean filter applied, by its path)
        saved = git("hash-object", "--", os_path)
        if saved.returncode != 0 or saved.stdout.strip() != entry[1]:
            return
        with _LOCK:
            git("add", "--", os_path)
            # saved again meanwhile with a real change: git add staged it; put the entry back
            now = staged()
            if now is not None and now[1] != entry[1]:
                git("update-index", "--cacheinfo", ",".join(entry))
    except (OSError, subprocess.SubprocessError) as err:
        if contents_manager is not None:
            contents_manager.log.warning("git stat refresh of %s skipped: %s", os_path, err)


c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)
c.FileContentsManager.post_save_hook = refresh_git_stat
# JupyterLab hands the server's configuration to the contents manager twice, and the second
# time jupyter_server warns that this hook replaces itself
warnings.filterwarnings(
    "ignore", message=r"Overriding existing post_save_hook \(refresh_git_stat\)"
)
