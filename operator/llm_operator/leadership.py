"""Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

Replicas of the operator race for one Lease. The holder renews it every `retry` seconds; a candidate takes
it over only once it has watched the holder's record stay unchanged for `duration` seconds (its own clock,
so no clock skew between machines matters), with an optimistic-concurrency update that at most one
candidate wins. A holder that cannot renew within `deadline` seconds stops acting at once (the process
exits; Kubernetes starts it again as a candidate), before the lease can expire for anyone else.

A candidate runs nothing else: no watch, no reconcile, no write. Written here over `k8s.Api` rather than
with the `kubernetes` client's leaderelection module, which needs that client (44 MB of model classes the
operator does not otherwise load, bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_operator.k8s import Api, ApiError, Kind

logger = logging.getLogger(__name__)
LEASE = Kind("coordination.k8s.io", "v1", "leases")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseConfig:
    """Where the Lease is, who we are, and its timing (client-go's defaults: 15 s, 10 s, 2 s)."""

    namespace: str
    name: str
    identity: str
    duration: float = 15.0
    deadline: float = 10.0
    retry: float = 2.0


class Elector:
    """Acquire the Lease (blocking), then keep renewing it in a thread; `on_lost` when that fails."""

    def __init__(self, api: Api, config: LeaseConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.config = config
        self.clock = clock
        self._observed: tuple[str, float] | None = None  # (the holder's record as last seen, when it changed)
        self._stop = threading.Event()

    def _path(self, named: bool = True) -> str:
        return LEASE.path(self.config.namespace, self.config.name if named else "")

    def _body(self, current: dict[str, Any] | None, *, taking_over: bool) -> dict[str, Any]:
        spec = dict((current or {}).get("spec") or {})
        now = _now()
        if taking_over or current is None:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current is not None else 0)
        spec.update(
            holderIdentity=self.config.identity,
            leaseDurationSeconds=int(self.config.duration),
            renewTime=now,
        )
        meta: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if current is not None:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {"apiVersion": LEASE.api_version, "kind": "Lease", "metadata": meta, "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True if we hold the Lease afterwards."""
        try:
            current = self.api.request("GET", self._path())
        except ApiError as error:
            if error.status != 404:
                raise
            current = None
        if current is None:
            try:
                self.api.request("POST", self._path(named=False), self._body(None, taking_over=True))
            except ApiError as error:
                if error.status == 409:  # another candidate created it first
                    return False
                raise
            return True
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = f"{holder}|{spec.get('renewTime')}|{spec.get('leaseDurationSeconds')}"
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, self.clock())
        ours = holder == self.config.identity
        expired = self.clock() - self._observed[1] > float(spec.get("leaseDurationSeconds") or self.config.duration)
        if not ours and holder and not expired:
            return False
        try:
            self.api.request("PUT", self._path(), self._body(current, taking_over=not ours))
        except ApiError as error:
            if error.status == 409:  # someone else renewed or took it in between
                return False
            raise
        return True

    def acquire(self) -> None:
        """Block until we hold the Lease."""
        waiting_logged = False
        while not self._stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    where = f"{self.config.namespace}/{self.config.name}"
                    logger.info("leader: holding lease %s as %s", where, self.config.identity)
                    return
            except (ApiError, OSError) as error:
                logger.warning("leader election: %s", error)
            if not waiting_logged:
                logger.info("standby: lease %s/%s is held by another replica", self.config.namespace, self.config.name)
                waiting_logged = True
            self._stop.wait(self.config.retry)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew every `retry` seconds in a thread; call `on_lost` if no renewal succeeds for `deadline`."""

        def loop() -> None:
            renewed = self.clock()
            while not self._stop.wait(self.config.retry):
                try:
                    if self.try_acquire_or_renew():
                        renewed = self.clock()
                        continue
                except (ApiError, OSError) as error:
                    logger.warning("leader election: renewal failed: %s", error)
                if self.clock() - renewed > self.config.deadline:
                    logger.error("leader election: lost lease %s/%s", self.config.namespace, self.config.name)
                    on_lost()
                    return

        thread = threading.Thread(target=loop, name="llm-operator-lease", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def release(self) -> None:
        """Hand the Lease back (on shutdown): another replica takes it over at once, not after `duration`."""
        try:
            current = self.api.request("GET", self._path())
            if (current.get("spec") or {}).get("holderIdentity") != self.config.identity:
                return
            body = self._body(current, taking_over=False)
            body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
            self.api.request("PUT", self._path(), body)
            logger.info("leader: released lease %s/%s", self.config.namespace, self.config.name)
        except (ApiError, OSError) as error:
            logger.warning("leader election: could not release the lease: %s", error)
