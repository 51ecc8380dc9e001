"""Downstream evaluation of a run through lm-evaluation-harness, cached like training.

`evaluate_run` scores a finished run's kept weights (`autoscale.train.harness`) on harness tasks:
autoscale's local tasks (``autoscale_*``, in ``autoscale/eval_tasks``; offline, a smoke test of the
path, not a measure of ability) or any standard task whose dataset is already in the machine's
Hugging Face cache (nothing is downloaded: the harness runs with the hub offline). The result is
written to ``RUN_DIR/downstream/<key>.json``, keyed by the run's fingerprint, the task definitions,
the few-shot count, the limit and the harness version; the same request is then served from there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from autoscale.atomic import write_text_atomic
from autoscale.errors import AutoscaleError
from autoscale.scratch import scratch_folder

DOWNSTREAM = "downstream"
TASKS_PREFIX = "autoscale-tasks-"  # temporary folders of our tasks' definitions and processed data


def local_tasks() -> dict[str, Path]:
    """autoscale's local tasks: name -> its data file."""
    folder = resources.files("autoscale") / "eval_tasks"
    return {p.name[: -len(".jsonl")]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jsonl")}


def check_tasks(tasks: Sequence[str], include_path: str | Path | None = None) -> None:
    """Refuse, in a second and before anything trains or loads, a task no one defines: not one of
    ours, not in a task YAML under ``include_path`` (the user's tasks, as lm-eval's
    ``--include_path``), and its name in no task file of lm-eval (a text search: lm-eval's own
    index, which takes seconds to build, decides the rest when the run is scored)."""
    import importlib.util

    if not tasks or any(not isinstance(t, str) or not t.strip() for t in tasks):
        raise AutoscaleError("name at least one task, each a non-empty name (--tasks)")
    local = local_tasks()
    missing = {t for t in tasks if t not in local} - set(user_tasks(tasks, include_path))
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return  # no harness: `require_harness` says how to install it
    if missing:
        for path in (Path(spec.origin).parent / "tasks").rglob("*.yaml"):
            text = path.read_bytes()
            missing = {t for t in missing if t.encode() not in text}
            if not missing:
                return
    if missing:
        raise AutoscaleError(f"unknown task {sorted(missing)[0]!r} ({_known(local, include_path)})")


def _known(local: Mapping[str, Path], include_path: str | Path | None) -> str:
    where = f"; task YAMLs under {include_path}" if include_path is not None else "; or --include-path DIR"
    return (f"autoscale's local tasks: {', '.join(local)}{where}; or a standard lm-eval task whose dataset is in "
            "the Hugging Face cache")


def _task_files(include_path: str | Path) -> list[Path]:
    folder = Path(include_path)
    if not folder.is_dir():
        raise AutoscaleError(f"task folder {str(include_path)!r} does not exist (--include-path)")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


def user_tasks(tasks: Sequence[str], include_path: str | Path | None) -> dict[str, str]:
    """The ``tasks`` defined under ``include_path``: name -> a hash of the folder's task YAMLs and of
    every file they name (their data), so that an edited task or its data is scored again."""
    if include_path is None:
        return {}
    import yaml

    class Loader(yaml.SafeLoader):  # lm-eval's YAMLs may hold `!function module.name`: not needed here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    digest, defined = hashlib.sha256(), set()
    for path in _task_files(include_path):
        text = path.read_bytes()
        try:
            doc = yaml.load(text.decode("utf-8"), Loader=Loader)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise AutoscaleError(f"task file {path} is not readable YAML: {str(exc).splitlines()[0]}") from None
        if isinstance(doc, dict) and isinstance(doc.get("task"), str):
            defined.add(doc["task"])
        digest.update(path.name.encode() + b"\0" + text + b"\0")
        for named in _files_named(doc, path.parent):
            digest.update(named.read_bytes() + b"\0")
    return {t: f"include:{digest.hexdigest()[:16]}" for t in tasks if t in defined}


def _files_named(doc: Any, folder: Path) -> list[Path]:
    """Files a task YAML names (its data files), as given, or relative to the working directory or
    to the YAML's folder."""
    if isinstance(doc, dict):
        return [f for v in doc.values() for f in _files_named(v, folder)]
    if isinstance(doc, list):
        return [f for v in doc for f in _files_named(v, folder)]
    if isinstance(doc, str) and "\n" not in doc and "\0" not in doc and len(doc) < 4096:
        try:
            return next(([p] for p in (Path(doc), folder / doc) if p.is_file()), [])
        except OSError:  # a string that is no path (too long a name, say)
            return []
    return []


def _task_yaml(name: str, data: Path, cache: Path | None = None) -> str:
    """A multiple-choice harness task over ``data`` (context, choices, gold); ``cache``: where the
    `datasets` library writes its processed copy and lock files (not the user's HF cache)."""
    kwargs: dict[str, Any] = {"data_files": {"test": str(data)}}
    if cache is not None:
        kwargs["cache_dir"] = str(cache)
    return json.dumps({
        "task": name, "dataset_path": "json", "dataset_kwargs": kwargs,
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}", "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }, indent=1)


def task_identity(tasks: Sequence[str], include_path: str | Path | None = None) -> dict[str, str]:
    """Each task's definition hash: a local task's YAML and data bytes, a user task's folder
    (`user_tasks`), a standard task's name."""
    local = local_tasks()
    user = user_tasks(tasks, include_path)
    out = {}
    for t in tasks:
        if t in local:
            out[t] = hashlib.sha256(_task_yaml(t, Path("data")).encode() + local[t].read_bytes()).hexdigest()[:16]
        else:
            out[t] = user.get(t, f"lm_eval:{t}")
    return out


def evaluate_run(run_dir: str | Path, store: Any, tasks: Sequence[str], num_fewshot: int = 0,
                 limit: int | None = None, include_path: str | Path | None = None) -> dict[str, Any]:
    """{"tasks": {task: {"metric", "value", "stderr"}}, "average", "cached", "key"} for one run, and a
    "note" when a damaged cached score was replaced. ``include_path``: a folder of the user's task YAMLs."""
    check_tasks(tasks, include_path)  # in a second, before the harness (seconds to import) and the checkpoint load
    from autoscale.train.harness import kept_weights, require_harness

    require_harness()
    run_dir = Path(run_dir)
    state = kept_weights(run_dir)

    def model() -> Any:
        from autoscale.train.harness import ProxyHarnessLM

        return ProxyHarnessLM.from_run(run_dir, store, state)  # the checkpoint is read once

    return _scored(run_dir, {"run": state.get("fingerprint")}, model, tasks, num_fewshot, limit, include_path)


def evaluate_hf_model(model_dir: str | Path, tasks: Sequence[str], num_fewshot: int = 0, limit: int | None = None,
                      include_path: str | Path | None = None) -> dict[str, Any]:
    """`evaluate_run` for a Hugging Face causal LM saved with ``save_pretrained`` (its weights, config
    and fast tokenizer in ``model_dir``), scored on the CPU by the adapter that scores our runs
    (`autoscale.train.harness`); cached in ``model_dir/downstream/``, keyed by the folder's content."""
    check_tasks(tasks, include_path)
    from autoscale.train.harness import require_harness

    require_harness()
    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise AutoscaleError(f"{model_dir} is not a Hugging Face model folder (no config.json; save it with "
                             "save_pretrained, with its tokenizer)")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and DOWNSTREAM not in p.relative_to(folder).parts):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")

    def model() -> Any:
        from autoscale.train.harness import ProxyHarnessLM

        return ProxyHarnessLM.from_hf_folder(folder)

    return _scored(folder, {"hf_model": digest.hexdigest()}, model, tasks, num_fewshot, limit, include_path)


def _scored(folder: Path, identity: Mapping[str, Any], model: Callable[[], Any], tasks: Sequence[str],
            num_fewshot: int, limit: int | None, include_path: str | Path | None) -> dict[str, Any]:
    """The score of ``model()`` from ``folder/downstream/<key>.json``, or computed and written there."""
    import lm_eval

    definitions = task_identity(tasks, include_path)
    key = hashlib.sha256(json.dumps({
        **identity, "tasks": definitions, "num_fewshot": num_fewshot, "limit": limit,
        "harness": lm_eval.__version__,
    }, sort_keys=True).encode()).hexdigest()[:16]
    path = folder / DOWNSTREAM / f"{key}.json"
    note = {}
    if path.exists():
        cached = _cached(path)
        if cached is not None:
            return cached | {"cached": True}
        note = {"note": f"the cached score {path.name} was damaged: the run was scored again"}
    # the user's tasks as their identity names them: their folder is read and hashed once
    user = {t for t, d in definitions.items() if d.startswith("include:")}
    result = _evaluate(model, list(tasks), num_fewshot, limit, include_path, user) | {"key": key}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")
    return result | {"cached": False} | note


def _cached(path: Path) -> dict[str, Any] | None:
    """A cached score, or None when the file is damaged (it is then scored again, and said so)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(data, dict) and isinstance(data.get("tasks"), dict) and isinstance(data.get("average"), float)
    return data if ok else None


def _evaluate(model: Callable[[], Any], tasks: list[str], num_fewshot: int, limit: int | None,
              include_path: str | Path | None, user: set[str]) -> dict[str, Any]:
    from unittest import mock

    from lm_eval import evaluator as lm_evaluator
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # offline by design: never fetch a dataset
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    local = local_tasks()
    with _quiet():
        lm = model()
    # named by our pid: removed on any exit but a kill, and then by the next scoring
    with scratch_folder(TASKS_PREFIX) as folder:
        for t in tasks:
            if t in local:
                Path(folder, f"{t}.yaml").write_text(_task_yaml(t, local[t], Path(folder) / "datasets"),
                                                     encoding="utf-8")
        # indexing lm-eval's thousands of built-in tasks takes seconds: only when one is asked for
        paths = [folder] if include_path is None else [folder, str(Path(include_path).resolve())]
        manager = TaskManager(include_path=paths, include_defaults=not set(tasks) <= set(local) | set(user))
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            raise AutoscaleError(f"unknown task {unknown[0]!r} ({_known(local, include_path)})")
        # lm-eval records the git commit of the working directory with `git describe`, whose "fatal: not
        # a git repository" would reach our output: that commit is not the run's, so it is not asked for
        with (warnings.catch_warnings(), mock.patch.object(lm_evaluator, "get_git_commit_hash", lambda: None),
              _quiet()):
            warnings.simplefilter("ignore")
            try:
                out = simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit,
                                      task_manager=manager, log_samples=False, bootstrap_iters=1000)
            except (ConnectionError, OSError) as exc:
                raise AutoscaleError(f"a task's dataset is not available offline ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]})") from None
    results: dict[str, Any] = {}
    for t in tasks:
        row = (out or {}).get("results", {}).get(t, {})
        metric = next((k.split(",")[0] for k in row if k.split(",")[0] in ("acc_norm", "acc", "exact_match")
                       and not k.startswith("alias")), None)
        if metric is None:
            raise AutoscaleError(f"task {t!r} reported no accuracy")
        value = row[f"{metric},none"]
        stderr = row.get(f"{metric}_stderr,none")
        results[t] = {"metric": metric, "value": float(value),
                      "stderr": None if stderr in (None, "N/A") else float(stderr)}
    return {"tasks": results, "average": sum(r["value"] for r in results.values()) / len(results),
            "num_fewshot": num_fewshot, "limit": limit}


@contextlib.contextmanager
def _quiet():
    """While a model loads and is scored, the libraries' progress bars (transformers' "Loading
    weights", datasets' "Generating test split", lm-eval's) and lm-eval's notes stay out of our
    output: what matters is in the result, and our errors are raised, not printed."""
    harness_log = logging.getLogger("lm_eval")
    level = harness_log.level
    harness_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        harness_log.setLevel(level)


def mean_over_seeds(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per task, the mean value over several runs (seeds) and its standard error."""
    import numpy as np

    tasks = list(results[0]["tasks"])
    out: dict[str, Any] = {}
    for t in tasks:
        values = np.array([r["tasks"][t]["value"] for r in results])
        out[t] = {"value": float(values.mean()),
                  "stderr": float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1
                  else results[0]["tasks"][t].get("stderr")}
    return {"tasks": out, "average": float(np.mean([r["average"] for r in results])), "seeds": len(results)}
