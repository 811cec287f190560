"""Command-line pieces every ``monitor`` subcommand shares: the config flags, one flag per
``[hub]`` setting, and the usage error. Below the commands, so that they need not import
the top-level ``monitor`` command (which imports them)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields

from monitor.config import Config, HubSettings, load_config


class UsageError(Exception):
    """A command-line mistake: printed as one line, exit status 2."""


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config``: which hub.toml to read."""
    parser.add_argument("--config", metavar="FILE",
                        help="hub.toml to read (default: $MONITOR_CONFIG, ./hub.toml, "
                             "then the user config dir)")


def add_hub_setting_flags(parser: argparse.ArgumentParser,
                          only: Sequence[str] | None = None) -> None:
    """One ``--name`` flag per [hub] setting (or those in ``only``)."""
    for f in fields(HubSettings):
        if only is not None and f.name not in only:
            continue
        parser.add_argument("--" + f.name.replace("_", "-"), dest="setting_" + f.name,
                            metavar=f.name.upper(), default=None,
                            help=f"override [hub] {f.name} (default {f.default!r})")


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config the way every command does: file, environment, then flags."""
    flags = {k.removeprefix("setting_"): v for k, v in vars(args).items()
             if k.startswith("setting_")}
    return load_config(getattr(args, "config", None), flags=flags)
