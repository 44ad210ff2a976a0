"""A scenario's roles with their configs changed, and rendered configuration files as lines: what the
tests of the vendor profiles' renderers share."""
import dataclasses


def with_config(role, **changes):
    """`role` with `changes` merged into its config; a change to ... removes the key."""
    config = {k: v for k, v in {**role.config, **changes}.items() if v is not ...}
    return dataclasses.replace(role, config=config)


def config_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]
