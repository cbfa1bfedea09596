"""The embedded Ray: every port it opens listens on the loopback interface only."""

import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs kqmix[ray]"),
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")]

# Runs in a fresh interpreter (Ray's single-machine switch is read when `ray` is imported): starts the
# embedded Ray as `kqmix sweep` does, with a task and an actor running, and lists the TCP ports in LISTEN
# state of the driver and every process it started (GCS, raylet, workers, agents).
SCRIPT = textwrap.dedent("""
    import json, os
    from kqmix.cluster import connect, require_ray

    def descendants(root):
        children = {}
        for stat in os.listdir("/proc"):
            if stat.isdigit():
                try:
                    fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(stat))
        out, todo = set(), [root]
        while todo:
            pid = todo.pop()
            out.add(pid)
            todo.extend(children.get(pid, []))
        return out

    def listening():
        states = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in open(table).read().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # LISTEN
                    states[cols[9]] = cols[1]
        found = []
        for pid in descendants(os.getpid()):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                name = open(f"/proc/{pid}/comm").read().strip()
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
                if inode in states:
                    found.append([name, states[inode]])
        return found

    require_ray()  # as `kqmix sweep` does: Ray (and Tune) imported first, to name a missing extra
    ray = connect(num_cpus=1)

    @ray.remote
    class Actor:
        def ping(self):
            return 1

    @ray.remote
    def task():
        return 1

    actor = Actor.remote()
    assert ray.get([actor.ping.remote(), task.remote()]) == [1, 1]
    print(json.dumps({"node_ip": ray.util.get_node_ip_address(), "listening": listening()}))
    ray.shutdown()
""")


def address_of(hex_address: str) -> ipaddress._BaseAddress:
    """An address of /proc/net/tcp{,6}: hex in 32-bit little-endian words."""
    host = hex_address.split(":")[0]
    words = [bytes.fromhex(host[i:i + 8])[::-1] for i in range(0, len(host), 8)]
    address = ipaddress.ip_address(b"".join(words))
    return getattr(address, "ipv4_mapped", None) or address


def test_the_embedded_ray_listens_on_loopback_only():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # kqmix must set the switch itself
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["node_ip"] == "127.0.0.1"
    names = {name for name, _ in report["listening"]}
    assert {"gcs_server", "raylet"} <= names, names  # the servers were found, so the check below means something
    assert len(report["listening"]) >= 5, report
    exposed = [(name, str(address_of(a))) for name, a in report["listening"] if not address_of(a).is_loopback]
    assert not exposed, exposed
