"""Two builds of ``ingress-audit serve`` side by side: server CPU per one-event request of each.

``python -m bench.pair A B`` starts a serve process from each checkout (``A``, ``B``: a
directory holding a ``webhook`` package, e.g. a ``git worktree`` of an older commit; ``.`` is
this one), with the default config in a data dir of its own. The same one-event bodies of the
benchmark's pool (kept and not) go to both, alternately, one request at a time over one
keep-alive connection each, and each process's CPU is read from /proc. On a shared host whose
speed drifts by tens of percent from one run to the next, both builds see the same moments:
a difference of a few percent in CPU per request shows, where a throughput or latency figure
from two runs would bury it. It says nothing of concurrency: ``python -m bench`` does.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.generate import Body, build_pool
from bench.server import ServeProcess, cpu_seconds

__all__ = ["Kind", "main", "measure"]


@dataclass(frozen=True, slots=True)
class Kind:
    """CPU per request of each build for one kind of request, in µs."""

    name: str
    requests: int
    cpu_us: tuple[float, float]

    def line(self) -> str:
        a, b = self.cpu_us
        return f"{self.name}: {a:.1f} / {b:.1f} µs of server CPU per request ({(b / a - 1) * 100:+.1f} %)"


class _Client:
    def __init__(self, server: ServeProcess) -> None:
        self.pid = server.pid
        self._conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self._stamp = 0

    def post(self, body: Body) -> None:
        self._stamp += 1
        self._conn.request(
            "POST", "/audit", body=body.render(self._stamp), headers={"Content-Type": "application/json"}
        )
        answer = self._conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"POST /audit answered {answer.status}")

    def close(self) -> None:
        self._conn.close()


def measure(
    builds: tuple[Path, Path],
    *,
    unmatched: int = 3000,
    matched: int = 400,
    rounds: int = 2,
    seed: int = 20261124,
) -> list[Kind]:
    """``rounds`` passes over ``unmatched`` bodies that keep nothing, then over ``matched`` that keep
    their event (lists over 60 kB left out: they go to a worker), after a warm-up of a tenth.
    /proc counts CPU in clock ticks (10 ms): keep each pass at a second or more of it."""
    pool = build_pool(seed=seed, batches=max(2, (unmatched + matched) // 380 + 2))
    kinds = {
        "keeps nothing": [b for b in pool.singles if b.matched == 0][:unmatched],
        "keeps its event": [b for b in pool.singles if b.matched and _size(b) < 60_000][:matched],
    }
    with tempfile.TemporaryDirectory(prefix="ingress-audit-pair-") as tmp:
        servers: list[ServeProcess] = []
        clients: list[_Client] = []
        try:
            for index, code in enumerate(builds):
                workdir = Path(tmp) / str(index)
                workdir.mkdir()
                server = ServeProcess(workdir, code=code)
                servers.append(server)
                server.start()
            clients += [_Client(server) for server in servers]
            for bodies in kinds.values():
                for body in bodies[: len(bodies) // 10]:
                    for client in clients:
                        client.post(body)
            return [_kind(name, bodies, clients, rounds) for name, bodies in kinds.items()]
        finally:
            for client in clients:
                client.close()
            for server in servers:
                server.stop()


def _size(body: Body) -> int:
    return sum(map(len, body.parts))


def _kind(name: str, bodies: Sequence[Body], clients: list[_Client], rounds: int) -> Kind:
    spent = [0.0, 0.0]
    for _ in range(rounds):
        before = [cpu_seconds(client.pid) for client in clients]
        for index, body in enumerate(bodies):
            order = clients if index % 2 == 0 else clients[::-1]  # neither is always second
            for client in order:
                client.post(body)
        for side, client in enumerate(clients):
            spent[side] += cpu_seconds(client.pid) - before[side]
    requests = len(bodies) * rounds
    a, b = (seconds / requests * 1e6 for seconds in spent)
    return Kind(name=name, requests=requests, cpu_us=(a, b))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="a checkout holding the webhook package (the base)")
    parser.add_argument("b", type=Path, help="another (the change); '.' is this one")
    parser.add_argument("--unmatched", type=int, default=3000, help="bodies that keep nothing (3000)")
    parser.add_argument("--matched", type=int, default=400, help="bodies that keep their event (400)")
    parser.add_argument("--rounds", type=int, default=2, help="passes over each set (2)")
    args = parser.parse_args(argv)
    for build in (args.a, args.b):
        if not (build / "webhook" / "__init__.py").is_file():
            parser.error(f"{build} holds no webhook package")
    for kind in measure((args.a, args.b), unmatched=args.unmatched, matched=args.matched, rounds=args.rounds):
        sys.stdout.write(kind.line() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
