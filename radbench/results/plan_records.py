"""The part of the results store that keeps a study's plan and its failures, so that `radbench status` and the
report show what is stored, running, failed or not reached yet. Mixed into ResultsStore (its connection and
error handling)."""

from __future__ import annotations

import io
import os
import socket
import time
from contextlib import closing

import pandas as pd

STALE_SECONDS = 300.0  # a claim with no heartbeat for this long is taken over (its process is gone or stuck)


class PlanRecords:
    """planned_units / planned_jobs / failures: written by the runner, read by `status` and the report."""

    def plan_units(self, study: str, units: list[tuple[str, str]]) -> None:
        """The study's backbone x dataset units as this run sees them (an edited study replaces the old list)."""
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM planned_units WHERE study = ?", (study,))
            conn.executemany("INSERT OR IGNORE INTO planned_units VALUES (?,?,?)", [(study, *u) for u in units])

    def record_study_notes(self, study: str, references: list[str], deviations: list[str],
                           cost_baseline: str | None = None) -> None:
        """What a study says of itself for its report: the published numbers it names (radbench/references; kept
        as they were at run time, so a CSV moved or edited later does not change an old report) and the ways it
        knowingly differs from the paper it follows (`deviations:`)."""
        from radbench.references import load_reference

        notes = [(study, "reference", name, load_reference(name).to_json(orient="records")) for name in references]
        notes += [(study, "deviation", f"{i:03d}", text) for i, text in enumerate(deviations)]
        notes += [(study, "setting", "cost_baseline", cost_baseline)] if cost_baseline else []
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM study_notes WHERE study = ?", (study,))
            conn.executemany("INSERT OR REPLACE INTO study_notes VALUES (?,?,?,?)", notes)

    def _notes(self, kind: str) -> list[tuple[str, str, str]]:
        if not self._read("SELECT 1 FROM sqlite_master WHERE name = 'study_notes'"):
            return []  # a read-only store from before studies kept notes
        return self._read("SELECT study, name, body FROM study_notes WHERE kind = ? ORDER BY study, name", (kind,))

    def references(self) -> pd.DataFrame:
        """Every stored study's published numbers (empty frame when none)."""
        frames = [pd.read_json(io.StringIO(body), orient="records", dtype={"table": str, "split": str})
                  for _, _, body in self._notes("reference")]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def cost_baseline(self) -> str | None:
        """The backbone a stored study named as its cost baseline (the first such study's)."""
        named = [body for _, name, body in self._notes("setting") if name == "cost_baseline"]
        return named[0] if named else None

    def deviations(self) -> dict[str, list[str]]:
        """study -> the deviations from its paper that it names."""
        out: dict[str, list[str]] = {}
        for study, _, body in self._notes("deviation"):
            out.setdefault(study, []).append(body)
        return out

    def plan_jobs(self, backbone: str, dataset: str, jobs: list[tuple[str, str, int, int]]) -> None:
        """One unit's jobs (key, protocol, seed, repeat), replacing the unit's earlier plan."""
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM planned_jobs WHERE backbone = ? AND dataset = ?", (backbone, dataset))
            conn.executemany("INSERT OR REPLACE INTO planned_jobs VALUES (?,?,?,?,?,?)",
                             [(key, backbone, dataset, protocol, seed, repeat)
                              for key, protocol, seed, repeat in jobs])

    def record_failure(self, key: str, backbone: str, dataset: str, protocol: str, seed: int, repeat: int,
                       error: str) -> None:
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("INSERT OR REPLACE INTO failures VALUES (?,?,?,?,?,?,?,?)",
                         (key, backbone, dataset, protocol, seed, repeat, error, time.time()))

    def clear_failure(self, key: str) -> None:
        with self._guard(), closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM failures WHERE key = ?", (key,))

    def clear_unit_failures(self, backbone: str, dataset: str, unit_key: str | None = None) -> None:
        """A unit ran to the end: drop its recorded failure (`unit_key`), or every unit failure of the backbone x
        dataset when the whole of it ran."""
        with self._guard(), closing(self._connect()) as conn, conn:
            if unit_key is not None:
                conn.execute("DELETE FROM failures WHERE key = ?", (unit_key,))
            else:
                conn.execute("DELETE FROM failures WHERE key LIKE 'unit:%' AND backbone = ? AND dataset = ?",
                             (backbone, dataset))

    def status(self) -> pd.DataFrame:
        """Per backbone x dataset x protocol of the plan: jobs planned, stored, failed (with the last error), running
        now (claimed by a live process: `held_by` says host:pid) and pending (none of these); a unit no run has
        reached yet has protocol "" and planned 0."""
        rows = self._frame(
            "SELECT p.key, p.backbone, p.dataset, p.protocol, j.key IS NOT NULL AS done, f.error, c.host, c.pid, "
            "c.heartbeat FROM planned_jobs p LEFT JOIN jobs j ON j.key = p.key LEFT JOIN failures f ON f.key = p.key "
            "AND j.key IS NULL LEFT JOIN claims c ON c.key = p.key AND j.key IS NULL")
        claimed = [isinstance(h, str) for h in rows.host]
        live = [c and claim_alive(h, int(pid), float(beat))
                for c, h, pid, beat in zip(claimed, rows.host, rows.pid, rows.heartbeat)]
        rows = rows.assign(running=live, pending=[not done and not alive and not isinstance(error, str)
                                                  for done, alive, error in zip(rows.done, live, rows.error)],
                           stale=[c and not alive for c, alive in zip(claimed, live)],
                           held_by=[f"{h}:{int(p)}" if alive else None for h, p, alive in zip(rows.host, rows.pid, live)],
                           stale_claim=[describe_claim(h, p, b) if c and not alive else None
                                        for c, alive, h, p, b in zip(claimed, live, rows.host, rows.pid, rows.heartbeat)])
        jobs = rows.groupby(["backbone", "dataset", "protocol"], as_index=False).agg(
            planned=("key", "size"), done=("done", "sum"), failed=("error", "count"), running=("running", "sum"),
            pending=("pending", "sum"), stale=("stale", "sum"), error=("error", "max"),
            held_by=("held_by", _joined), stale_claims=("stale_claim", _joined))
        units = self._frame("SELECT DISTINCT u.backbone, u.dataset FROM planned_units u WHERE NOT EXISTS "
                            "(SELECT 1 FROM planned_jobs p WHERE p.backbone = u.backbone AND p.dataset = u.dataset)")
        units = units.assign(protocol="", planned=0, done=0, failed=0, running=0, pending=0, stale=0, error=None,
                             held_by=None, stale_claims=None)
        # a unit whose worker failed before it planned its jobs (killed, data unreadable on that node)
        broken = self._frame("SELECT backbone, dataset, protocol, error FROM failures WHERE key LIKE 'unit:%'")
        broken = broken.assign(planned=0, done=0, failed=1, running=0, pending=0, stale=0, held_by=None,
                               stale_claims=None)
        units = units[~units.set_index(["backbone", "dataset"]).index.isin(
            broken.set_index(["backbone", "dataset"]).index)] if not broken.empty else units
        frames = [frame for frame in (jobs, units, broken) if not frame.empty]
        out = pd.concat(frames, ignore_index=True) if frames else jobs
        return out.sort_values(["dataset", "backbone", "protocol"]).reset_index(drop=True)


def _joined(values: pd.Series) -> str | None:
    return ", ".join(sorted(set(values.dropna()))) or None


def claim_alive(host: str, pid: int, heartbeat: float) -> bool:
    """A claim's process is alive: its heartbeat is recent (any host) and, on this host, its pid exists. A live pid
    with a stale heartbeat is not enough: pids are reused (after a restart, in containers pid 1 always exists)."""
    if time.time() - heartbeat >= STALE_SECONDS:
        return False
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
    return True


def describe_claim(host: str, pid: int, heartbeat: float) -> str:
    """`host:pid, heartbeat 42 s ago` for messages about a claim."""
    return f"{host}:{int(pid)}, heartbeat {_age(time.time() - heartbeat)} ago"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
