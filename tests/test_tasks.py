"""``torchrl_gorl.envs.tasks``: the one module of task names and per-task facts, and the env modules' import graph.

Nothing here builds an env: names resolve from plain tables (an unknown name lists dm_control's suite, which
imports ``dm_control.suite`` and nothing more).
"""
import ast
import pathlib
import subprocess
import sys

import pytest

import torchrl_gorl.envs
from torchrl_gorl.envs.tasks import (
    default_gamma,
    dm_control_tasks,
    EPISODE_LENGTH,
    PAPER_TASKS,
    PLAYGROUND_TASKS,
    resolve_playground_task,
    resolve_task,
    split_task_name,
    task_id,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENVS = ROOT / "torchrl_gorl" / "envs"

#: The paper's seven tasks, written out here rather than read from the module under test.
PAPER = {
    "CheetahRun": ("cheetah", "run"),
    "FingerSpin": ("finger", "spin"),
    "FingerTurnHard": ("finger", "turn_hard"),
    "FishSwim": ("fish", "swim"),
    "HopperStand": ("hopper", "stand"),
    "WalkerWalk": ("walker", "walk"),
    "BallInCup": ("ball_in_cup", "catch"),
}


# --------------------------------------------------------------------------- tables
def test_paper_tasks_are_the_papers_seven_and_playground_ports():
    assert PAPER_TASKS == PAPER
    assert all(PLAYGROUND_TASKS[name] == pair for name, pair in PAPER_TASKS.items())
    assert len(PLAYGROUND_TASKS) == 25 and len(set(PLAYGROUND_TASKS.values())) == 25  # one port per dm_control task
    assert EPISODE_LENGTH == 1000


def test_every_port_is_a_dm_control_task():
    assert set(PLAYGROUND_TASKS.values()) <= dm_control_tasks()


def test_package_reexports_the_same_objects():
    for name in ("EPISODE_LENGTH", "PAPER_TASKS", "PLAYGROUND_TASKS", "default_gamma", "resolve_playground_task",
                 "resolve_task", "task_id"):
        assert getattr(torchrl_gorl.envs, name) is getattr(torchrl_gorl.envs.tasks, name), name


# --------------------------------------------------------------------------- resolution
@pytest.mark.parametrize("name,pair", sorted(PAPER.items()))
def test_paper_name_resolves_to_its_dm_control_pair_and_playground_port(name, pair):
    dm_id = "-".join(pair)
    assert resolve_task(name) == pair and task_id(name) == dm_id
    assert resolve_task(dm_id) == pair
    assert resolve_playground_task(name) == name and resolve_playground_task(dm_id) == name


@pytest.mark.parametrize(
    "name,expected",
    [("cheetah-run", "cheetah-run"), ("cheetah_run", "cheetah-run"), ("cheetah/run", "cheetah-run"),
     ("cheetah:run", "cheetah-run"), ("CheetahRun", "cheetah-run"), ("ball_in_cup_catch", "ball_in_cup-catch"),
     ("ball_in_cup-catch", "ball_in_cup-catch"), ("BallInCup", "ball_in_cup-catch"),
     ("finger_turn_hard", "finger-turn_hard"), ("point_mass_easy", "point_mass-easy"), ("PointMass", "point_mass-easy"),
     ("PendulumSwingup", "pendulum-swingup"), ("quadruped-walk", "quadruped-walk"), ("quadruped_walk", "quadruped-walk")],
)
def test_task_id_normalises(name, expected):
    assert task_id(name) == expected


def test_split_task_name():
    known = {("cheetah", "run"), ("ball_in_cup", "catch"), ("finger", "turn_hard")}
    assert split_task_name("cheetah-run", known) == ("cheetah", "run")
    assert split_task_name("ball_in_cup_catch", known) == ("ball_in_cup", "catch")
    assert split_task_name("finger_turn_hard", known) == ("finger", "turn_hard")
    assert split_task_name("cheetah-walk", known) is None and split_task_name("CheetahRun", known) is None


# Moved from tests/test_playground.py (the names need no Playground install).
@pytest.mark.parametrize(
    "name,expected",
    [("CheetahRun", "CheetahRun"), ("cheetah-run", "CheetahRun"), ("cheetah_run", "CheetahRun"),
     ("cheetah/run", "CheetahRun"), ("ball_in_cup-catch", "BallInCup"), ("ball_in_cup_catch", "BallInCup"),
     ("finger-turn_hard", "FingerTurnHard"), ("point_mass-easy", "PointMass"), ("PendulumSwingup", "PendulumSwingup")],
)
def test_resolves_playground_and_dm_control_names(name, expected):
    assert resolve_playground_task(name) == expected


def test_run_names_of_playground_only_tasks():
    assert task_id("PendulumSwingup") == "pendulum-swingup" and task_id("CheetahRun") == "cheetah-run"


def test_run_task_ids_map_back_to_their_playground_port():
    """The scripts build Playground envs from the run's ``task_id`` ("cheetah-run", "point_mass-easy"): every port's
    id must resolve to that same port."""
    assert all(resolve_playground_task(task_id(name)) == name for name in PLAYGROUND_TASKS)


# --------------------------------------------------------------------------- gamma
def test_default_gamma_per_task():
    low = {("finger", "spin"), ("ball_in_cup", "catch")}
    for name, pair in PLAYGROUND_TASKS.items():
        expected = 0.95 if pair in low else 0.995
        assert default_gamma(name) == expected and default_gamma("-".join(pair)) == expected, name
    assert default_gamma("finger_spin") == default_gamma("ball_in_cup_catch") == 0.95
    assert default_gamma("quadruped-walk") == 0.995  # a dm_control task with no Playground port


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["cheetah-walk", "Cheetah-Run", "CheetahWalk", ""])
def test_unknown_task_lists_the_accepted_names(name):
    with pytest.raises(ValueError, match=rf"^unknown task '{name}'; accepted names: BallInCup, CheetahRun, .*"
                                         r"cheetah-run, .*walker-walk\.$"):
        resolve_task(name)
    with pytest.raises(ValueError, match=rf"unknown task '{name}'"):
        task_id(name)
    with pytest.raises(ValueError, match=rf"unknown task '{name}'"):
        default_gamma(name)


@pytest.mark.parametrize("name", ["CheetahWalk", "quadruped-walk", "Go1JoystickFlatTerrain"])
def test_unknown_playground_task_lists_the_accepted_names(name):
    with pytest.raises(ValueError, match=rf"^unknown MuJoCo Playground task '{name}' \(only Playground's dm_control-suite "
                                         r"ports are supported\); accepted names: AcrobotSwingup, .*CheetahRun, .*"
                                         r"acrobot-swingup, .*walker-walk\.$"):
        resolve_playground_task(name)


@pytest.mark.parametrize("resolve", [resolve_task, resolve_playground_task, task_id, default_gamma])
@pytest.mark.parametrize("name", [None, 3, ("cheetah", "run")])
def test_a_name_that_is_not_a_string(resolve, name):
    with pytest.raises(ValueError, match=r"^task must be a string, got "):
        resolve(name)


# --------------------------------------------------------------------------- import graph
def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_tasks_module_alone_imports_no_env_module_torch_or_jax():
    """Loaded on its own (not through the package ``__init__``, which imports every env module), ``tasks.py``
    resolves names and has imported nothing but the standard library."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tasks', {str(ENVS / 'tasks.py')!r})\n"
        "tasks = importlib.util.module_from_spec(spec); spec.loader.exec_module(tasks)\n"
        "assert tasks.resolve_task('CheetahRun') == ('cheetah', 'run') and tasks.default_gamma('FingerSpin') == 0.95\n"
        "assert tasks.resolve_playground_task('ball_in_cup_catch') == 'BallInCup'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "             ('torchrl_gorl', 'torch', 'torchrl', 'dm_control', 'mujoco', 'jax', 'mujoco_playground')))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["tasks", "dm_control", "batched_dm_control", "playground", "transforms"])
def test_each_env_module_imports_first_in_a_fresh_interpreter(module):
    """The package ``__init__`` files are bypassed, so ``module`` really is the first of the env modules to run: an
    import cycle between them fails here. None imports JAX, and ``tasks`` imports no env module."""
    code = (
        "import importlib, sys, types\n"
        f"for name, path in [('torchrl_gorl', {str(ROOT / 'torchrl_gorl')!r}), ('torchrl_gorl.envs', {str(ENVS)!r})]:\n"
        "    package = types.ModuleType(name); package.__path__ = [path]; sys.modules[name] = package\n"
        f"importlib.import_module('torchrl_gorl.envs.{module}')\n"
        "print(sorted(m for m in sys.modules if m.startswith('torchrl_gorl.envs.')))\n"
        "print(sorted({'jax', 'mujoco_playground', 'warp'} & set(sys.modules)))\n"
    )
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, jax = out.stdout.strip().splitlines()
    assert jax == "[]"
    if module == "tasks":
        assert loaded == "['torchrl_gorl.envs.tasks']"


@pytest.mark.parametrize("module", ["torchrl_gorl.envs.tasks", "torchrl_gorl.envs.dm_control",
                                    "torchrl_gorl.envs.batched_dm_control", "torchrl_gorl.envs.playground"])
def test_each_env_module_imports_first_through_the_package(module):
    out = _run(f"import {module}, sys; assert 'jax' not in sys.modules")
    assert out.returncode == 0, out.stderr[-2000:]


def _env_imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """The ``torchrl_gorl`` modules ``path`` imports, each with whether the import is at module level."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("torchrl_gorl"):
            names = [node.module] if node.module != "torchrl_gorl.envs" else [f"torchrl_gorl.envs.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("torchrl_gorl")]
        else:
            continue
        found += [(name, id(node) in top) for name in names]
    return found


def test_env_modules_import_each_other_at_module_level_one_way():
    graph = {}
    for path in sorted(ENVS.glob("*.py")):
        if path.name == "__init__.py":
            continue
        imports = _env_imports(path)
        assert all(top for _, top in imports), f"{path.name} imports a GoRL module inside a function: {imports}"
        graph[path.stem] = {name.rsplit(".", 1)[-1] for name, _ in imports if name.startswith("torchrl_gorl.envs.")}
    assert graph["tasks"] == set()
    assert "tasks" in graph["dm_control"] and "tasks" in graph["batched_dm_control"] and "tasks" in graph["playground"]
    assert "dm_control" not in graph["playground"] | graph["batched_dm_control"]
    done, visiting = set(), []

    def visit(node):
        assert node not in visiting, f"import cycle: {' -> '.join(visiting + [node])}"
        if node not in done:
            visiting.append(node)
            for dep in graph.get(node, ()):
                visit(dep)
            visiting.pop()
            done.add(node)

    for node in graph:
        visit(node)


def test_tasks_module_imports_only_the_standard_library_at_module_level():
    tree = ast.parse((ENVS / "tasks.py").read_text())
    modules = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert set(modules) <= {"__future__", "re"}, modules
