"""The learning table of the PETS planner benchmark (benchmarks/pets_speed/recommended.py): runs of different lengths
compared at equal steps."""

import json
import sys
from pathlib import Path

import pytest

# benchmarks/ is not part of the installed package: import it from the checkout, after the installed packages.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from benchmarks.common import SCHEMA_VERSION  # noqa: E402
from benchmarks.pets_speed.recommended import learning  # noqa: E402


def write_run(path: Path, returns: list[float], steps: int) -> None:
    episodes = [{"ret": ret, "end_step": 50 * (i + 1)} for i, ret in enumerate(returns)]
    record = {
        "schema_version": SCHEMA_VERSION,
        "env": "Reacher-v5",
        "seed": 0,
        "config": {"steps": steps},
        "cpu_seconds": 2.0 * steps,
        "wall_seconds": 2.0 * steps,
        "results": {"episodes": episodes},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def row(table: str, config: str) -> list[str]:
    (line,) = [line for line in table.splitlines() if f"| {config} " in line]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_until_step_keeps_the_episodes_that_ended_by_then(tmp_path: Path) -> None:
    # 6 episodes of 50 steps (the long run) and 3 (the short one): cut at 150 steps, each keeps its first 3 episodes.
    write_run(tmp_path / "learning" / "pets_Reacher-v5_s0.json", [-40.0, -20.0, -10.0, -5.0, -4.0, -3.0], 300)
    write_run(tmp_path / "learning_paper" / "pets_Reacher-v5_s0.json", [-40.0, -30.0, -8.0], 150)

    whole = row(learning(str(tmp_path)), "recommended")
    assert whole[3] == "300" and whole[4] == "6"
    assert float(whole[8]) == round(-82.0 / 6, 1)  # last 10: all six (one decimal below 100)

    cut = learning(str(tmp_path), until_step=150)
    recommended, paper = row(cut, "recommended"), row(cut, "paper CEM")
    assert recommended[3] == "150 of 300" and recommended[4] == "3"
    assert float(recommended[6]) == -10.0  # best of the first three
    assert float(recommended[7]) == round(-70.0 / 3, 1)  # final: the mean of the last three, -40, -20, -10
    assert paper[3] == "150 of 150" and paper[4] == "3"
    assert whole[10] == recommended[10] == "600"  # CPU seconds stay the whole run's


def test_replaced_sections_are_listed_after_the_others(tmp_path: Path) -> None:
    write_run(tmp_path / "learning_previous" / "pets_Reacher-v5_s0.json", [-40.0, -6.0], 100)
    write_run(tmp_path / "learning" / "pets_Reacher-v5_s0.json", [-40.0, -4.0], 100)
    table = learning(str(tmp_path))
    assert float(row(table, "previous section")[6]) == -6.0 and float(row(table, "recommended")[6]) == -4.0
    assert table.index("| recommended ") < table.index("| previous section ")


def test_until_step_before_any_episode_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path / "learning" / "pets_Reacher-v5_s0.json", [-40.0, -20.0], 100)
    with pytest.raises(ValueError, match="no episode that ended by step 10"):
        learning(str(tmp_path), until_step=10)
