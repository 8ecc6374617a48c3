"""The small sealed documents (mutable, so checked on every verify), objects Lifeboat did
not write, and what earlier verifications proved (``verified.json``).

A document of another format is refused as every reader refuses it (FormatError), except
a restore point's, which is reported: the repository as a whole is still readable.
"""

from __future__ import annotations

from engine.errors import ChecksumError, FormatError, NotFoundError
from engine.repository import clusterinfo, layout, sealed
from engine.repository.encryption import KEYS_OBJECT, belongs, keys_of
from engine.repository.inventory import Inventory
from engine.repository.storage import Storage
from engine.repository.verify.report import Problem, VerifyReport
from engine.restore import points

STATE_FIELDS = ("packs", "lists", "wal", "manifests")
State = dict[str, set[str]]


def check(storage: Storage, cluster: str, inventory: Inventory,
          report: VerifyReport) -> clusterinfo.ClusterInfo | None:
    """Check the marker, ``cluster.json`` and the restore points, and name unknown objects;
    the cluster's identity, or None when it is damaged."""
    _check_marker(storage, report)
    info = None
    key = layout.cluster_info_key(cluster)
    try:
        info = clusterinfo.read(storage, cluster)  # ClusterSetupError when not initialised
    except ChecksumError as exc:
        report.problems.append(Problem(
            "cluster", "cluster.json", str(exc), key,
            f"every command of cluster '{cluster}' refuses to run, wal-push included (archiving "
            "stops); the WAL's needs are not worked out without it"))
    report.documents += 1
    for key in inventory.of("restore-point"):
        report.documents += 1
        try:
            points.parse(storage.get(key), f"restore point {key}", keys_of(storage), key)
        except NotFoundError:
            continue  # replaced or removed meanwhile
        except (ChecksumError, FormatError) as exc:
            name = key.rsplit("/", 1)[-1].removesuffix(".json")
            report.problems.append(Problem("restore-point", name, str(exc), key,
                                           f"restore --target-name {name} cannot find its LSN"))
    for key in inventory.unknown:
        report.problems.append(Problem(
            "unknown", key.rsplit("/", 1)[-1], "not written by Lifeboat (an unknown object)", key,
            "nothing Lifeboat reads: find out what put it there, then remove it"))
    return info


def _check_marker(storage: Storage, report: VerifyReport) -> None:
    key = layout.REPO_MARKER
    report.documents += 1
    try:
        raw = storage.get(key)
    except NotFoundError:
        report.problems.append(Problem("marker", key, "missing from the repository", key,
                                       "init and copy cannot check the repository's format "
                                       "('lifeboat init' writes it again)"))
        return
    try:
        clusterinfo.parse_marker(raw, f"repository {storage.describe()} ({key})", keys_of(storage))
    except ChecksumError as exc:
        report.problems.append(Problem("marker", key, str(exc), key,
                                       "init and copy refuse the repository (remove it, then "
                                       "'lifeboat init' writes it again)"))
    keys = keys_of(storage)
    if keys is not None:  # opened when the command began: read again, as verify reads everything
        report.documents += 1
        try:
            if not belongs(storage.get(KEYS_OBJECT), keys, KEYS_OBJECT):
                raise ChecksumError(f"{KEYS_OBJECT}: another repository's keys")
        except (ChecksumError, NotFoundError) as exc:
            report.problems.append(Problem(
                "keys", KEYS_OBJECT, str(exc), KEYS_OBJECT,
                "every command refuses to open the repository: nothing in it can be read (put "
                f"back {KEYS_OBJECT} from a copy of the repository)"))


def read_state(storage: Storage, cluster: str, inventory: Inventory, report: VerifyReport) -> State:
    """What earlier verifications proved; nothing when there is no state or it is damaged
    (which is reported). Written by another format: refused."""
    empty: State = {name: set() for name in STATE_FIELDS}
    key = layout.verify_state_key(cluster)
    if key not in inventory.of("verify-state"):
        return empty
    report.documents += 1
    try:
        document = sealed.unseal(storage.get(key), sealed.VERIFIED, key, keys_of(storage), key)
        return {name: set(document.get(name, [])) for name in STATE_FIELDS}
    except NotFoundError:
        return empty
    except (ChecksumError, TypeError) as exc:
        report.problems.append(Problem(
            "verify-state", "verified.json", str(exc), key,
            "--since-last cannot skip what earlier verifications proved (this one writes it anew)"))
        return empty


def write_state(storage: Storage, cluster: str, state: State) -> None:
    key = layout.verify_state_key(cluster)
    storage.put(key, sealed.seal(sealed.VERIFIED, {name: sorted(state[name]) for name in STATE_FIELDS},
                                 keys=keys_of(storage), key=key))
