"""``rosey plugin ...`` arguments: built from the action registry, usage errors exit 2 at once."""

from __future__ import annotations

import pytest

from rosey.api.actions import ACTIONS
from rosey.cli import EXIT_USAGE, main
from rosey.cli.parser import build_parser as _parser


@pytest.mark.parametrize(
    ("argv", "fields"),
    [
        (["plugin", "list"], {}),
        (["plugin", "status", "dice"], {"names": ["dice"]}),
        (["plugin", "status"], {"names": []}),
        (["plugin", "restart", "dice", "--json"], {"names": ["dice"]}),
        (["plugin", "stop", "dice", "quote"], {"names": ["dice", "quote"]}),
        (["plugin", "restart", "all"], {"names": ["all"]}),
        (["plugin", "logs", "dice"], {"field_plugin": "dice", "field_lines": None}),
        (["plugin", "logs", "dice", "-n", "5", "-f"], {"field_plugin": "dice", "field_lines": "5"}),
        (["plugin", "help"], {"field_action": None}),
        (["plugin", "help", "logs"], {"field_action": "logs"}),
    ],
)
def test_arguments_map_to_request_fields(argv: list[str], fields: dict[str, object]) -> None:
    args = vars(_parser().parse_args(argv))
    assert {k: v for k, v in args.items() if k.startswith("field_") or k == "names"} == fields


def test_every_action_has_a_subcommand_with_its_help() -> None:
    parser = _parser()
    for name, action in ACTIONS.items():
        required = [
            "x"
            for field in action.positional
            if action.request.model_fields[field].is_required() or field == "plugin"
        ]
        args = parser.parse_args(["plugin", name, *required])
        assert args.action == name
    assert "cursor" not in vars(parser.parse_args(["plugin", "logs", "x"]))


def test_logs_follow_flag_only_on_logs() -> None:
    assert _parser().parse_args(["plugin", "logs", "x", "--follow"]).follow is True
    with pytest.raises(SystemExit):
        _parser().parse_args(["plugin", "status", "x", "-f"])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["plugin"], "required"),
        (["plugin", "frobnicate"], "invalid choice"),
        (["plugin", "start"], "which plugin? give NAME ... or 'all'"),
        (["plugin", "stop", "a", "all"], "'all' cannot be mixed with names"),
        (["plugin", "logs", "a", "b"], "unrecognized arguments: b"),
        (["plugin", "logs", "dice", "-n", "0"], "field 'lines': input should be greater than"),
        (["plugin", "status", "a", ""], "field 'plugin': string should have at least 1 character"),
        (["plugin", "logs", "dice", "-n", "x"], "field 'lines': input should be a valid integer"),
        (["plugin", "status", ""], "field 'plugin': string should have at least 1 character"),
    ],
)
def test_usage_errors_exit_2_without_looking_for_a_bot(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == EXIT_USAGE
    assert needle in capsys.readouterr().err
