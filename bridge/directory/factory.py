"""The directory source a config names."""

from __future__ import annotations

from bridge.config import Config
from bridge.directory import Directory
from bridge.directory.ldap import LdapDirectory
from bridge.directory.yaml import YamlDirectory


def make_directory(config: Config) -> Directory:
    opts = config.directory.options
    if config.directory.type == "yaml":
        return YamlDirectory(opts["path"], float(opts.get("refresh_seconds") or 60))
    return LdapDirectory({k: v for k, v in opts.items() if v is not None})
