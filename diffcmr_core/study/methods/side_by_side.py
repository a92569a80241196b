"""Networks trained side by side. On a CPU the study's small networks use two threads poorly:
two training processes of one thread each make more steps per second than one process of two
(``benchmarks/bench_side_by_side.py`` measures it), so the evidence study trains the networks
whose runs do not depend on each other in a pool of ``EvidenceConfig.train_workers``
processes, each with its share of torch's threads. Each job is
:func:`~diffcmr_core.study.methods.convergence.train_to_budget`, as it runs in-process: its
seeds fix every draw, so a run is the same bit for bit at the same thread count; an
interrupted pool leaves every run resumable from its last chunk. On a GPU (or with one worker)
the jobs run one after another in this process."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffcmr_core.method.checkpoints import default_device
from diffcmr_core.method.systems import SYSTEMS
from diffcmr_core.study.methods import convergence
from diffcmr_core.study.methods.convergence import train_to_budget
from diffcmr_core.study.settings.profiles import Profile, paths_for

Job = tuple[Profile, str, int, str]  # (profile, task, acc, method)


def _folder(job: Job) -> Path:
    profile, task, acc, method = job
    return paths_for(profile).model_dir(task, acc, method)


def finished(job: Job) -> bool:
    """Whether ``job``'s run is done (:func:`~.convergence.finished`)."""
    return convergence.finished(*job)


def pending(jobs: list[Job]) -> list[Job]:
    """The jobs whose run is not finished, one per model folder, the sampling networks (the
    longest runs) first so that a pool ends with the short ones."""
    out: dict[Path, Job] = {}
    for job in jobs:
        if _folder(job) not in out and not finished(job):
            out[_folder(job)] = job
    return sorted(out.values(), key=lambda j: not SYSTEMS[j[3]].sampling)


def describe(job: Job) -> str:
    """A job in a few words: method, task, factor, rate, seed and profile."""
    profile, task, acc, method = job
    train = profile.network(method).train
    return f"{method} {task} {acc}x lr {train.lr:g} seed {train.seed} ({profile.name})"


def _child(job: Job, threads: int, conn) -> None:
    """A worker process: ``job`` at ``threads`` threads; sends None, or what went wrong."""
    torch.set_num_threads(threads)
    try:
        train_to_budget(*job, progress=False)
        conn.send(None)
    except BaseException as err:  # (its words reach the parent whatever it was)
        conn.send(f"{type(err).__name__}: {err}")
        raise


def _steps_done(job: Job) -> int:
    """The last step in a run's training log (0 before its first row): the pool's progress."""
    log = _folder(job) / "loss.csv"
    try:
        lines = log.read_text().splitlines()
        return int(lines[-1].split(",", 1)[0]) if len(lines) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0


def train_side_by_side(jobs: list[Job], *, workers: int = 2, progress: bool = True) -> None:
    """Train every job of ``jobs`` not finished yet (:func:`pending`): in ``workers`` processes
    of ``torch.get_num_threads() // workers`` threads each on a CPU (a process per job), else in
    this process one after another. Returns when all are done. A job that fails, or whose
    process dies, stops the others (each resumes where it was at the next call) and raises an
    error naming it."""
    todo = pending(jobs)
    workers = min(workers, len(todo))
    if not todo:
        return
    if workers <= 1 or default_device().type != "cpu":
        for job in todo:
            train_to_budget(*job, progress=progress)
        return
    threads = max(1, torch.get_num_threads() // workers)
    steps = {describe(job): job[0].network(job[3]).train.iterations for job in todo}
    each = f"{threads} thread{'s' * (threads > 1)} each"
    bar = tqdm(
        total=sum(steps.values()),
        unit="step",
        desc=f"{len(todo)} networks, {workers} side by side ({each})",
        disable=not progress,
    )
    context = multiprocessing.get_context("spawn")
    queue, running, done = list(todo), {}, 0
    try:
        while queue or running:
            while queue and len(running) < workers:
                job = queue.pop(0)
                receive, send = context.Pipe(duplex=False)
                proc = context.Process(target=_child, args=(job, threads, send), daemon=True)
                proc.start()
                send.close()
                running[proc] = (job, receive)
            time.sleep(1.0)
            for proc in [p for p in running if not p.is_alive()]:
                job, receive = running.pop(proc)
                said = receive.recv() if receive.poll() else f"its process ended ({proc.exitcode})"
                if said is not None or proc.exitcode:
                    raise RuntimeError(f"training {describe(job)} failed: {said}")
                done += steps[describe(job)]
                bar.set_postfix_str(f"done: {describe(job)}")
            bar.n = done + sum(_steps_done(job) for job, _ in running.values())
            bar.refresh()
    finally:
        for proc in running:
            proc.terminate()
        for proc in running:
            proc.join()
        bar.close()
