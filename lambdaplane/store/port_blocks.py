"""Hyperplane port blocks across hosts (issue 20, deliverable 4): a function's ENI address is
one address on every host that runs the function; each host translates that ENI's flows only
within a block of source ports leased here, so replies can be routed by destination port to the
host that owns the flow (net/hyperplane/port_blocks.py). Also each host's hop number (its
next-hop address on the fabric, the same number in every VPC) and per (ENI, host) the flows the
host last counted, whose sum is the ENI's count for the 65,000-flow rule.

Blocks partition the ENI's SNAT range (1024–65535, as AWS's NAT platform) into `block_size`
ports (the last block may be shorter): block k is [first + k·size, first + (k+1)·size − 1]. A
host holds at most one block per ENI; blocks never overlap, so across hosts an ENI has at most
the range's 64,512 ports per destination — below 65,000 whatever the number of hosts. Leasing is
atomic across processes without locks: the primary key (eni_id, block) and the UNIQUE
(eni_id, host_id) refuse a second claim, and an `INSERT OR IGNORE` (PostgreSQL: `ON CONFLICT DO
NOTHING`, which waits for a concurrent claimer's commit) tells by its row count whether this
claim won. A host's blocks and hop go with its lease row (store/hosts.py): foreign keys
`ON DELETE CASCADE`. Rows only; which ENIs a host needs is the agent's business."""
from __future__ import annotations

from dataclasses import dataclass

from .db import Database, schema
from .hosts import HostStore  # noqa: F401  (its table first: the foreign keys point at it)

SNAT_FIRST_PORT, SNAT_LAST_PORT = 1024, 65535
DEFAULT_BLOCK_SIZE = 4096
HOP_LAST = 4094  # hop numbers 1..4094 (net/hyperplane/port_blocks.py: 169.254.240.0/20)

schema("""
CREATE TABLE IF NOT EXISTS hyperplane_port_blocks (
  eni_id TEXT NOT NULL, block INTEGER NOT NULL,
  host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  first_port INTEGER NOT NULL, last_port INTEGER NOT NULL,
  flows INTEGER NOT NULL DEFAULT 0, leased_at REAL NOT NULL,
  PRIMARY KEY (eni_id, block), UNIQUE (eni_id, host_id));
CREATE TABLE IF NOT EXISTS hyperplane_host_hops (
  host_id TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
  hop INTEGER NOT NULL UNIQUE);
""")


class PortBlockError(RuntimeError):
    pass


class NoFreeBlock(PortBlockError):
    """Every block of the ENI's range is held by other hosts: the ENI is full across hosts."""


@dataclass(frozen=True)
class PortBlock:
    eni_id: str
    block: int
    host_id: str
    first_port: int
    last_port: int
    flows: int  # the host's last count of the ENI's tracked flows

    @property
    def ports(self) -> str:
        """The SNAT range "lo-hi" (net/hyperplane's ensure_eni `ports`)."""
        return f"{self.first_port}-{self.last_port}"

    @property
    def size(self) -> int:
        return self.last_port - self.first_port + 1


def _block(r: object) -> PortBlock:
    return PortBlock(r["eni_id"], int(r["block"]), r["host_id"],  # type: ignore[index]
                     int(r["first_port"]), int(r["last_port"]),  # type: ignore[index]
                     int(r["flows"]))  # type: ignore[index]


class PortBlockStore:
    def __init__(self, db: Database, block_size: int = DEFAULT_BLOCK_SIZE,
                 first_port: int = SNAT_FIRST_PORT, last_port: int = SNAT_LAST_PORT) -> None:
        if not 1 <= block_size <= last_port - first_port + 1:
            raise ValueError(f"block size {block_size} does not fit {first_port}-{last_port}")
        self.db = db
        self.block_size = block_size
        self.first_port, self.last_port = first_port, last_port

    @property
    def blocks_per_eni(self) -> int:
        span = self.last_port - self.first_port + 1
        return -(-span // self.block_size)

    def range_of(self, block: int) -> tuple[int, int]:
        """The ports of block number `block`."""
        lo = self.first_port + block * self.block_size
        return lo, min(lo + self.block_size - 1, self.last_port)

    # blocks -------------------------------------------------------------------------------
    def lease(self, eni_id: str, host_id: str, now: float) -> PortBlock:
        """The host's block of the ENI: the one it holds, else the lowest free one, claimed.
        Raises NoFreeBlock when other hosts hold them all, PortBlockError when the host has no
        lease row or the ENI's blocks were cut with another block size."""
        for _attempt in range(self.blocks_per_eni + 2):
            held = self.block_of(eni_id, host_id)
            if held is not None:
                return held
            taken = self.of_eni(eni_id)
            for other in taken:
                if self.range_of(other.block) != (other.first_port, other.last_port):
                    raise PortBlockError(
                        f"{eni_id}: block {other.block} is {other.ports}, cut with another "
                        f"block size than {self.block_size}")
            used = {b.block for b in taken}
            free = [k for k in range(self.blocks_per_eni) if k not in used]
            if not free:
                raise NoFreeBlock(f"{eni_id}: all {self.blocks_per_eni} port blocks are held")
            if not self._claim(eni_id, free[0], host_id, now):
                continue  # another host won that block (or this host, concurrently): again
        raise PortBlockError(f"{eni_id}: could not claim a block for {host_id}")

    def _claim(self, eni_id: str, block: int, host_id: str, now: float) -> bool:
        if self.db.conn.execute("SELECT id FROM hosts WHERE id=?", (host_id,)).fetchone() is None:
            raise PortBlockError(f"host {host_id} has no lease")
        lo, hi = self.range_of(block)
        cursor = self.db.conn.execute(
            "INSERT OR IGNORE INTO hyperplane_port_blocks (eni_id, block, host_id, first_port, "
            "last_port, flows, leased_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
            (eni_id, block, host_id, lo, hi, now))
        return int(cursor.rowcount) > 0

    def release(self, eni_id: str, host_id: str) -> bool:
        """The host gives the ENI's block back (its last environment of the ENI went)."""
        return int(self.db.conn.execute(
            "DELETE FROM hyperplane_port_blocks WHERE eni_id=? AND host_id=?",
            (eni_id, host_id)).rowcount) > 0

    def release_eni(self, eni_id: str) -> int:
        """Every block of an ENI (the ENI is deleted); how many."""
        return int(self.db.conn.execute("DELETE FROM hyperplane_port_blocks WHERE eni_id=?",
                                        (eni_id,)).rowcount)

    def block_of(self, eni_id: str, host_id: str) -> PortBlock | None:
        row = self.db.conn.execute(
            "SELECT * FROM hyperplane_port_blocks WHERE eni_id=? AND host_id=?",
            (eni_id, host_id)).fetchone()
        return None if row is None else _block(row)

    def of_eni(self, eni_id: str) -> list[PortBlock]:
        """The ENI's blocks, by block number."""
        return [_block(r) for r in self.db.conn.execute(
            "SELECT * FROM hyperplane_port_blocks WHERE eni_id=? ORDER BY block",
            (eni_id,)).fetchall()]

    def of_host(self, host_id: str) -> list[PortBlock]:
        return [_block(r) for r in self.db.conn.execute(
            "SELECT * FROM hyperplane_port_blocks WHERE host_id=? ORDER BY eni_id, block",
            (host_id,)).fetchall()]

    def of_enis(self, eni_ids: list[str]) -> dict[str, list[PortBlock]]:
        """Blocks of several ENIs in one read (a VPC namespace's reply steering)."""
        out: dict[str, list[PortBlock]] = {e: [] for e in eni_ids}
        if not eni_ids:
            return out
        marks = ", ".join("?" for _ in eni_ids)
        for r in self.db.conn.execute(
                f"SELECT * FROM hyperplane_port_blocks WHERE eni_id IN ({marks}) "
                "ORDER BY eni_id, block", tuple(eni_ids)).fetchall():
            out[r["eni_id"]].append(_block(r))
        return out

    # the 65,000-flow rule across hosts ----------------------------------------------------
    def record_flows(self, eni_id: str, host_id: str, flows: int) -> bool:
        """The host's count of the ENI's tracked flows (its sampler); False without a block."""
        return int(self.db.conn.execute(
            "UPDATE hyperplane_port_blocks SET flows=? WHERE eni_id=? AND host_id=?",
            (flows, eni_id, host_id)).rowcount) > 0

    def flows(self, eni_id: str) -> int:
        """The ENI's tracked flows on every host, as last recorded."""
        row = self.db.conn.execute(
            "SELECT COALESCE(SUM(flows), 0) AS total FROM hyperplane_port_blocks "
            "WHERE eni_id=?", (eni_id,)).fetchone()
        return int(row["total"])

    def has_room(self, eni_id: str, flow_limit: int) -> bool:
        """Whether the ENI stays under `flow_limit` (65,000) counted across hosts."""
        return self.flows(eni_id) < flow_limit

    # hops: each host's number on the fabric -------------------------------------------------
    def hop(self, host_id: str) -> int:
        """The host's hop number (1..4094), the lowest free one claimed on first ask."""
        for _attempt in range(HOP_LAST + 1):
            row = self.db.conn.execute("SELECT hop FROM hyperplane_host_hops WHERE host_id=?",
                                       (host_id,)).fetchone()
            if row is not None:
                return int(row["hop"])
            if self.db.conn.execute("SELECT id FROM hosts WHERE id=?",
                                    (host_id,)).fetchone() is None:
                raise PortBlockError(f"host {host_id} has no lease")
            used = {int(r["hop"]) for r in self.db.conn.execute(
                "SELECT hop FROM hyperplane_host_hops").fetchall()}
            free = next((h for h in range(1, HOP_LAST + 1) if h not in used), None)
            if free is None:
                raise PortBlockError(f"all {HOP_LAST} hop numbers are taken")
            self.db.conn.execute("INSERT OR IGNORE INTO hyperplane_host_hops (host_id, hop) "
                                 "VALUES (?, ?)", (host_id, free))
        raise PortBlockError(f"could not claim a hop number for {host_id}")

    def hops(self) -> dict[str, int]:
        """host id → hop number, of every host that has one."""
        return {r["host_id"]: int(r["hop"]) for r in self.db.conn.execute(
            "SELECT host_id, hop FROM hyperplane_host_hops").fetchall()}
