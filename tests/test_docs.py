"""The docs run as written: each `skinscreen ...` line in README.md and docs/ names real commands and options.

The command lines are read from the Markdown (code blocks and inline code) and walked through click's
own command tree (`skinscreen.cli:cli`), so a renamed option or a group option given after the
command fails here, not in front of a hospital's admin. The cheap ones are run too.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from skinscreen.cli import cli
from tests.conftest import REPO, copy_images, dataset_images

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `skinscreen` followed by a word: the command, not the package folder `skinscreen/...`.
COMMAND = re.compile(r"(?:^|[\s`(;&|$=])(skinscreen(?: +[^\s`#|;)]+)+)")


@dataclass(frozen=True)
class DocLine:
    page: str
    number: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.number}: {self.text}"


def command_lines(page: Path) -> list[DocLine]:
    """Each `skinscreen ...` command a page shows, from code blocks and inline code."""
    found: list[DocLine] = []
    in_block = False
    carried = ""
    for number, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            code = carried + line.removeprefix("$ ").split(" #")[0]
            if code.endswith("\\"):  # continued on the next line
                carried = code[:-1] + " "
                continue
            carried = ""
            found += [DocLine(page.name, number, m) for m in _commands_in(code)]
        else:
            for span in re.findall(r"`([^`]+)`", line):
                found += [DocLine(page.name, number, m) for m in _commands_in(span)]
    return found


# Where a command line ends inside prose or a diagram: a comment, a bracket of prose, an arrow.
END = re.compile(r" +(?:\(|&|<--|-->|/ |or:|>|2>|<)")


def _commands_in(code: str) -> list[str]:
    return [
        END.split(m.group(1))[0].rstrip(".,:")
        for m in COMMAND.finditer(code)
        if _starts_a_command(code[: m.start(1)])
    ]


def _starts_a_command(before: str) -> bool:
    """`skinscreen` as the program run, not as a user or database name (`pg_dump -U skinscreen`)."""
    words = before.split()
    return not words or before.rstrip()[-1] in ";&|(`" or "=" in words[-1] or words[-1] in ("exec", "time")


def check(line: str) -> str | None:
    """What is wrong with a command line, or None: commands and options looked up in click's tree."""
    try:
        words = shlex.split(line.replace("[", " ").replace("]", " "))
    except ValueError as exc:
        return f"cannot be split: {exc}"
    words = words[1:]  # "skinscreen"
    command: click.Command = cli
    ctx = click.Context(cli, info_name="skinscreen")
    while words:
        word = words.pop(0)
        if word in ("|", "..."):
            break
        if word.startswith("-"):
            name = word.split("=")[0]
            param = _option(command, name)
            if param is None:
                return f"{name} is not an option of `{ctx.command_path}`"
            if not param.is_flag and not param.count and "=" not in word and words:
                words.pop(0)  # its value
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, word)
            if sub is None:
                return f"{word!r} is not a command of `{ctx.command_path}`"
            ctx = click.Context(sub, info_name=word, parent=ctx)
            command = sub
            continue
        # An argument: commands that take none would refuse it.
        if not any(isinstance(p, click.Argument) for p in command.params):
            return f"`{ctx.command_path}` takes no argument, got {word!r}"
    return None


def _option(command: click.Command, name: str) -> click.Option | None:
    if name == "--help":
        return click.Option(["--help"], is_flag=True)
    for param in command.params:
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


ALL_LINES = [line for page in PAGES for line in command_lines(page)]


def test_the_docs_show_skinscreen_command_lines_to_check() -> None:
    assert len(ALL_LINES) > 50
    assert {p.name for p in PAGES} >= {"README.md", "operations.md", "dicom.md", "sites.md"}


def test_every_skinscreen_command_line_in_the_docs_names_real_commands_and_options() -> None:
    wrong = [f"{line}  ->  {problem}" for line in ALL_LINES if (problem := check(line.text))]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("skinscreen run INBOX -q", "-q is not an option of `skinscreen run`"),
        ("skinscreen run INBOX --poll", "--poll is not an option of `skinscreen run`"),
        ("skinscreen evalute DIR", "'evalute' is not a command of `skinscreen`"),
        (
            "skinscreen models promote VERSION --dry-run",
            "--dry-run is not an option of `skinscreen models promote`",
        ),
    ],
)
def test_a_wrong_command_line_is_caught(line: str, problem: str) -> None:
    assert check(line) == problem


def test_a_right_command_line_passes() -> None:
    assert check("skinscreen -q run samples/inbox --once --format json") is None
    assert check("skinscreen ingest /inbox [--poll]") is None


def test_every_command_the_docs_name_prints_its_help() -> None:
    paths = set()
    for line in ALL_LINES:
        words = [w for w in line.text.split()[1:] if not w.startswith("-")]
        command: click.Command = cli
        path: list[str] = []
        for word in words:
            sub = (
                command.get_command(click.Context(command), word)
                if isinstance(command, click.Group)
                else None
            )
            if sub is None:
                break
            path.append(word)
            command = sub
        paths.add(tuple(path))
    assert len(paths) > 20
    runner = CliRunner()
    for path in sorted(paths):
        done = runner.invoke(cli, [*path, "--help"])
        assert done.exit_code == 0, f"skinscreen {' '.join(path)} --help: {done.output}"
        assert "Usage: " in done.output


def test_skinscreen_models_runs_as_the_docs_show_it() -> None:
    done = CliRunner().invoke(cli, ["models"])
    assert done.exit_code == 0, done.output
    header, shipped = done.output.splitlines()[:2]
    row = dict(zip(header.split(), shipped.split(), strict=False))
    assert row["source"] == "shipped"
    assert row["views"] == "1"  # one network pass an image, said as a count


def test_predict_scores_the_sample_files_with_the_shipped_model_as_the_docs_show() -> None:
    samples = REPO / "samples" / "inbox"
    files = [str(samples / "lesion-04.jpg"), str(samples / "lesion-09-rle.dcm")]
    done = CliRunner().invoke(cli, ["predict", *files])
    assert done.exit_code == 0, done.output
    rows = done.output.splitlines()
    assert rows[0] == "path,probability,flagged,reason"
    assert [row.split(",")[2] for row in rows[1:]] == ["True", "True"]  # two malignant samples, flagged


def test_evaluate_without_out_writes_its_report_to_a_folder_named_after_the_data_and_the_model(
    tmp_path: Path, tiny_model: Path
) -> None:
    data = tmp_path / "ward7"
    copy_images(dataset_images("benign", 2), data / "benign")
    copy_images(dataset_images("malignant", 2), data / "malignant")
    done = subprocess.run(
        [sys.executable, "-m", "skinscreen", "evaluate", str(data), "--model", str(tiny_model)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = tmp_path / "evaluations" / "ward7-tiny-test" / "report.md"
    assert report.is_file()
    assert str(Path("evaluations") / "ward7-tiny-test" / "report.md") in done.stdout
