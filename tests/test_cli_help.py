"""`testbed <command> --help` explains every option: each argument of the parser and of every
subcommand has a help text."""
import argparse

import pytest

from testbed import cli


class _Built(Exception):
    def __init__(self, parser):
        super().__init__("parser built")
        self.parser = parser


def _parser(monkeypatch) -> argparse.ArgumentParser:
    """The parser cli.main builds, caught when main starts parsing."""
    def caught(self, *args, **kwargs):
        raise _Built(self)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
    with pytest.raises(_Built) as built:
        cli.main(["scenarios"])
    return built.value.parser


def test_every_option_of_every_command_has_help(monkeypatch):
    top = _parser(monkeypatch)
    parsers = {"testbed": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.update({f"testbed {name}": p for name, p in action.choices.items()})
    assert len(parsers) > 5, parsers
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, p in parsers.items() for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert missing == [], f"options without a help text: {missing}"
