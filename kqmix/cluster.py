"""Joining Ray: an embedded local Ray by default, an existing cluster with an address.

Sweeps (`kqmix.sweep`) and Ray-actor rollouts (`kqmix.runner_ray`) both
connect here. The embedded Ray starts with its dashboard (and jobs API) off
unless asked for, and every port it opens (GCS, raylet, object manager,
workers, dashboard) listens on 127.0.0.1 only: whoever reaches a Ray
cluster's ports runs code on it (docs/scale-out.md, "Security").

Ray binds its servers to the loopback interface only when the node's IP is
127.0.0.1, and on Linux it replaces a requested 127.0.0.1 by the machine's
routable IP unless `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` is false when `ray`
is imported (Ray's single-machine mode, the default on macOS and Windows).
`connect` sets it before importing Ray when it is about to start an
embedded Ray.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings

from .envs._extras import require

#: Ray's switch between multi-node mode and single-machine mode (all ports on 127.0.0.1), read at `import ray`.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: How long an unreachable address may take to be reported (TCP connect to the head node).
CONNECT_TIMEOUT_S = 10.0


class ClusterError(ValueError):
    """The Ray cluster named by an address cannot be reached."""


def _resolve(address: str | None) -> str | None:
    return address or os.environ.get("RAY_ADDRESS") or None


def require_ray(address: str | None = None):
    """`ray`, or a `MissingExtraError` naming `pip install 'kqmix[ray]'`.

    Imports Ray the way `connect(address)` will use it: in single-machine
    mode when it is to start an embedded Ray (no address) and nothing
    imported Ray before.
    """
    if _resolve(address) in (None, "local") and "ray" not in sys.modules:
        os.environ.setdefault(SINGLE_MACHINE_ENV, "0")
    require("ray.tune", "ray", "Scale-out (kqmix sweep, rollout_backend=ray)")
    import ray

    return ray


def check_reachable(address: str) -> None:
    """Fails fast, naming `address`, when nothing listens there (`ray.init` would wait for minutes)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"Ray address {address!r} is not of the form host:port or ray://host:port.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(f"Cannot reach the Ray cluster at {address!r}: {exc}.") from None
    if "://" not in address:
        _check_gcs(address)


def _check_gcs(address: str) -> None:
    """Asks the head node's GCS for the cluster id: something that is not a Ray head is named at once.

    (`ray.init` would retry for about 20 s, printing a warning a second.) A
    cluster with token authentication refuses the unauthenticated question,
    which still proves a Ray head is there.
    """
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), timeout=CONNECT_TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise ClusterError(f"No Ray head node answers at {address!r} "
                                   f"({exc.code().name}: {exc.details()}).") from None


def connect(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False):
    """Joins Ray once per process; returns the `ray` module.

    `address` (else `RAY_ADDRESS`) names an existing cluster; without one an
    embedded local Ray starts with every port on 127.0.0.1 and its dashboard
    off unless `dashboard`. Inside a Ray worker (a sweep trial) the process
    is already connected and nothing happens.
    """
    address = _resolve(address)
    embedded = address in (None, "local")
    ray = require_ray(address)
    if ray.is_initialized():
        return ray
    quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
    if not embedded and address != "auto":
        check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            # Something answered, but not a Ray head node we can join.
            raise ClusterError(f"Cannot join a Ray cluster at {address!r}: {str(exc).splitlines()[0]}") from None
    elif address == "auto":
        ray.init(address="auto", **quiet)
    else:
        os.environ.pop("RAY_ADDRESS", None)  # "local" must not fall back to a cluster
        ray.init(num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1", **quiet)
        node_ip = ray.util.get_node_ip_address()
        if node_ip != "127.0.0.1":
            warnings.warn(
                f"The embedded Ray listens on {node_ip} (every interface), not on 127.0.0.1 only: "
                f"`ray` was imported before kqmix could set {SINGLE_MACHINE_ENV}=0, or it is set to true. "
                f"Set {SINGLE_MACHINE_ENV}=0 in the environment to keep a local Ray private.",
                RuntimeWarning, stacklevel=2)
    return ray
