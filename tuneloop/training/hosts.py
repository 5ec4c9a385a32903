"""The instances of a SageMaker training job, and which one this is.

SageMaker starts the entry point once per instance and describes the cluster twice: the
variables ``SM_HOSTS`` (a JSON list such as ``["algo-1", "algo-2"]``) and ``SM_CURRENT_HOST``
(``algo-2``), and ``/opt/ml/input/config/resourceconfig.json`` (``hosts``,
``current_host``, ``network_interface_name``). Every instance receives the same list, so
its order is the node order: ``hosts[0]`` is node 0, which holds global rank 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESOURCE_CONFIG_FILE = "resourceconfig.json"
_SINGLE_HOST = "algo-1"  # SageMaker's name for the first (here: only) instance


class HostsError(ValueError):
    """The job's host list is malformed or does not contain this instance."""


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...] = (_SINGLE_HOST,)
    current_host: str = _SINGLE_HOST
    # The interface the instances reach each other on (resourceconfig.json), if given.
    network_interface: str | None = None

    def __post_init__(self) -> None:
        if self.current_host not in self.hosts:
            raise HostsError(
                f"current host {self.current_host!r} is not in the job's hosts "
                f"{list(self.hosts)} (SM_CURRENT_HOST must name one of SM_HOSTS)"
            )

    @property
    def nodes(self) -> int:
        return len(self.hosts)

    @property
    def node_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def multi_node(self) -> bool:
        return self.nodes > 1


def cluster(environ: Mapping[str, str], input_config_dir: Path) -> Cluster:
    """The job's hosts: ``SM_HOSTS``/``SM_CURRENT_HOST`` where set, else ``resourceconfig.json``
    in ``input_config_dir``, else one host (a local run)."""
    hosts_text = environ.get("SM_HOSTS")
    current: Any = environ.get("SM_CURRENT_HOST")
    interface: Any = environ.get("SM_NETWORK_INTERFACE_NAME")
    hosts = parse_hosts(hosts_text, "SM_HOSTS") if hosts_text else None
    if hosts is None or not current:
        # SageMaker writes the same facts to this file; read it only for what is missing.
        path = input_config_dir / RESOURCE_CONFIG_FILE
        config = _resource_config(path)
        if hosts is None and "hosts" in config:
            hosts = host_list(config["hosts"], f"{path} 'hosts'")
        current = current or config.get("current_host")
        interface = interface or config.get("network_interface_name")
    if current is not None and (not isinstance(current, str) or not current.strip()):
        raise HostsError(f"the current host must be a non-empty string, got {current!r}")
    if hosts is None:
        hosts = (current,) if current else (_SINGLE_HOST,)
    if current is None:
        if len(hosts) > 1:
            raise HostsError(
                f"SM_HOSTS lists {len(hosts)} hosts but neither SM_CURRENT_HOST nor "
                f"{RESOURCE_CONFIG_FILE} says which one this is"
            )
        current = hosts[0]
    return Cluster(hosts, current, interface if isinstance(interface, str) and interface else None)


def parse_hosts(text: str, source: str) -> tuple[str, ...]:
    """``SM_HOSTS``' JSON text as a tuple of host names (a clear error if it is not one)."""
    try:
        value = json.loads(text)
    except ValueError:
        raise HostsError(
            f'{source} must be a JSON list of host names like ["algo-1", "algo-2"], got {text!r}'
        ) from None
    return host_list(value, source)


def host_list(value: Any, source: str) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise HostsError(f"{source} must be a non-empty list of host names, got {value!r}")
    bad = [host for host in value if not isinstance(host, str) or not host.strip()]
    if bad:
        raise HostsError(f"{source} must hold non-empty host names, got {bad[0]!r}")
    duplicates = sorted({host for host in value if value.count(host) > 1})
    if duplicates:
        raise HostsError(f"{source} lists {duplicates[0]!r} more than once")
    return tuple(value)


def _resource_config(path: Path) -> dict[str, Any]:
    """The file's fields; empty where SageMaker did not write it (a local run)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise HostsError(f"cannot read {path}: {exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise HostsError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise HostsError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value
