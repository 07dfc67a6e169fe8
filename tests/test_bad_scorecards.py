"""Hostile and broken scorecard files: each is refused with the file, the line and the reason,
quickly and without a traceback, and `qa scorecard validate` lists every problem of every file.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.errors import ScorecardError
from qa.rules.format import MAX_BYTES, Problem, check_file, load_scorecard

GOOD = textwrap.dedent("""\
    id: site_card
    version: 2
    name: Site card
    languages: [en]
    pass_mark: 80
    sections:
      - id: opening
        name: Opening
        items:
          - id: greeting
            name: Greeting
            points: 60
            rule: {type: phrase, phrases: [thank you for calling]}
          - id: reference
            name: Reference number given
            points: 40
            rule:
              type: regex
              pattern: 'REF-\\d{6}'
    """)


def write(tmp_path: Path, text: str | bytes, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, max_seconds: float = 20.0) -> list[tuple[int | None, str]]:
    """(line, reason) of every problem; the check must end quickly whatever the input."""
    start = time.perf_counter()
    card, found = check_file(path)
    assert time.perf_counter() - start < max_seconds, "checking took too long"
    assert card is None and found
    assert all(p.file == str(path) for p in found)
    return [(p.line, p.reason) for p in found]


def line_of(text: str, needle: str, nth: int = 0) -> int:
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line][nth]


def test_good_card_loads(tmp_path):
    assert check_file(write(tmp_path, GOOD))[1] == []


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x+x+)+y", "(a|aa)+$", "(\\w+\\s?)+$"])
def test_catastrophic_regex_is_refused(tmp_path, pattern):
    text = GOOD.replace("'REF-\\d{6}'", f"'{pattern}'")
    path = write(tmp_path, text)
    [(line, reason)] = problems(path)
    assert line == line_of(text, "pattern:")
    assert reason.startswith(
        f"sections.0.items.1.rule.pattern: regular expression "
        f"{pattern!r} backtracks catastrophically: over 0.2 s on 1000 "
        "characters"
    )
    assert reason.endswith("avoid nested repeats such as (a+)+")


def test_regex_that_compiles_to_gigabytes_is_refused(tmp_path):
    text = GOOD.replace("'REF-\\d{6}'", "'(?:a{1000}){1000}|b{1000000000}'")
    [(line, reason)] = problems(write(tmp_path, text))
    assert line == line_of(text, "pattern:")
    assert reason == (
        "sections.0.items.1.rule.pattern: regular expression "
        "'(?:a{1000}){1000}|b{1000000000}' repeats too much: its counted "
        "repeats ({n}) come to over 10000 copies"
    )


def test_yaml_alias_bomb_is_refused(tmp_path):
    text = GOOD + textwrap.dedent("""\
        description: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
        x_b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
        x_c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
        x_d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
        x_e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
        x_f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
        x_g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
        x_h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
        x_i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
        """)
    assert problems(write(tmp_path, text), max_seconds=10) == [
        (
            line_of(text, "x_f: &f"),
            "YAML aliases expand this value to over 100,000 values "
            "(an alias bomb?); write the values out",
        )
    ]


def test_recursive_alias_is_refused(tmp_path):
    text = GOOD + "x_loop: &loop [1, *loop]\n"
    assert problems(write(tmp_path, text)) == [
        (line_of(text, "x_loop"), "a YAML alias refers to a value that contains it")
    ]


@pytest.mark.parametrize("depth", [60, 100_000])  # libyaml would crash the process at 100k
def test_deep_nesting_is_refused(tmp_path, depth):
    text = GOOD + "x_deep:\n  " + "[" * depth + "]" * depth + "\n"
    assert problems(write(tmp_path, text)) == [
        (line_of(text, "x_deep") + 1, "values nested deeper than 50 levels")
    ]


def test_huge_file_is_refused_before_parsing(tmp_path):
    path = write(tmp_path, GOOD + "# padding\n" * (MAX_BYTES // 10))
    kb = round(path.stat().st_size / 1024)
    assert problems(path, max_seconds=2) == [
        (None, f"file is {kb:,} KB; a scorecard may be at most 512 KB")
    ]


def test_not_utf8_names_line_and_column(tmp_path):
    data = GOOD.replace("name: Site card", "name: Caf\xe9 card").encode("latin-1")
    assert problems(write(tmp_path, data)) == [
        (3, "not UTF-8: byte 0xe9 at column 10; save the file as UTF-8")
    ]


def test_control_character_is_refused(tmp_path):
    text = GOOD.replace("name: Site card", "name: Site\x01card")
    assert problems(write(tmp_path, text)) == [
        (3, "not valid YAML: character '\\x01' (U+0001) is not allowed")
    ]


def test_empty_file_and_not_a_mapping(tmp_path):
    assert problems(write(tmp_path, "")) == [
        (1, "the file is empty; a scorecard is a mapping with id, version, name, sections...")
    ]
    assert problems(write(tmp_path, "- just\n- a list\n")) == [
        (1, "a scorecard is a mapping with id, version, name, sections...")
    ]


def test_every_problem_of_a_file_is_listed(tmp_path):
    """Unknown keys and wrong types all at once, each on its own line."""
    text = (
        GOOD.replace("pass_mark: 80", "pass_mark: high")
        .replace("name: Greeting", "name: Greeting\n        colour: red")
        .replace("points: 40", "points: lots")
        .replace("type: phrase,", "type: phrase, speaker: boss,")
    )
    assert problems(write(tmp_path, text)) == [
        (
            line_of(text, "pass_mark"),
            "pass_mark: Input should be a valid number, unable to parse string as a number",
        ),
        (line_of(text, "colour"), "sections.0.items.0.colour: unknown key 'colour'"),
        (
            line_of(text, "speaker: boss"),
            "sections.0.items.0.rule.speaker: Input should be 'agent', 'customer' or 'any'",
        ),
        (
            line_of(text, "points: lots"),
            "sections.0.items.1.points: Input should be a valid "
            "number, unable to parse string as a number",
        ),
    ]


def test_duplicate_ids_and_keys_are_all_listed(tmp_path):
    text = GOOD.replace("- id: reference", "- id: greeting").replace(
        "name: Opening", "name: Opening\n    name: Opening again"
    )
    assert problems(write(tmp_path, text)) == [
        (line_of(text, "name: Opening again"), "duplicate key 'name' (first on line 8)"),
        (line_of(text, "- id: greeting", 1), "sections.0.items.1.id: duplicate item id 'greeting'"),
    ]


def test_points_that_do_not_add_up(tmp_path):
    text = GOOD.replace("points: 40", "points: 30")
    assert problems(write(tmp_path, text)) == [
        (
            line_of(text, "sections:"),
            "sections: deduction scoring: item points must sum to 100, they sum to 90",
        )
    ]


def test_load_scorecard_raises_the_first_problem_and_keeps_all(tmp_path):
    text = GOOD.replace("pass_mark: 80", "pass_mark: high").replace("points: 40", "points: x")
    path = write(tmp_path, text)
    with pytest.raises(ScorecardError) as info:
        load_scorecard(path)
    assert str(info.value) == (
        f"{path}:5: pass_mark: Input should be a valid number, unable to parse string as a "
        "number (and 1 more problem; `qa scorecard validate` lists them)"
    )
    assert [p.line for p in info.value.problems] == [5, line_of(text, "points: x")]


def test_validate_checks_every_file_and_lists_every_problem(tmp_path):
    good = write(tmp_path, GOOD, "good.yaml")
    typo = write(
        tmp_path,
        GOOD.replace("pass_mark: 80", "pass_mark: high").replace("points: 40", "points: x"),
        "typo.yaml",
    )
    latin = write(tmp_path, GOOD.replace("Site card", "Caf\xe9").encode("latin-1"), "latin.yaml")
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(
        app, ["scorecard", "validate", str(typo), str(good), str(latin), str(missing)]
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines == [
        str(
            Problem(
                str(typo),
                5,
                "pass_mark: Input should be a valid number, unable to parse string as a number",
            )
        ),
        str(
            Problem(
                str(typo),
                line_of(GOOD, "points: 40"),
                "sections.0.items.1.points: Input "
                "should be a valid number, unable to parse string as a number",
            )
        ),
        f"ok {good}: site_card v2, 1 sections, 2 items, 0 critical, deduction scoring, "
        "pass mark 80",
        f"{latin}:3: not UTF-8: byte 0xe9 at column 10; save the file as UTF-8",
        f"{missing}: cannot read scorecard: No such file or directory",
    ]
    assert "3 of 4 scorecard file(s) invalid" in result.stderr
    ok = CliRunner().invoke(app, ["scorecard", "validate", str(good), str(good)])
    assert ok.exit_code == 0 and ok.stdout.count("ok ") == 2
