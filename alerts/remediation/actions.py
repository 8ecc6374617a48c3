"""The remediation actions by name: each does what its name says (see
:mod:`alerts.remediation.base` for the contract). The keys are exactly
:data:`engine.vocabulary.REMEDIATION_ACTIONS`; the seed uses two names for the network check."""

from __future__ import annotations

from alerts.remediation.base import Action
from alerts.remediation.cleanup import cleanup_staging_area
from alerts.remediation.dependencies import verify_backup_dependencies
from alerts.remediation.disk import check_disk_space
from alerts.remediation.escalate import escalate_to_dba
from alerts.remediation.network import check_network_connectivity
from alerts.remediation.replication import restart_replication, restart_replication_slot
from alerts.remediation.retry import retry_backup_operation

ACTIONS: dict[str, Action] = {
    "check_network_connectivity": check_network_connectivity,
    "verify_network_connectivity": check_network_connectivity,
    "check_disk_space": check_disk_space,
    "restart_replication": restart_replication,
    "restart_replication_slot": restart_replication_slot,
    "verify_backup_dependencies": verify_backup_dependencies,
    "cleanup_staging_area": cleanup_staging_area,
    "retry_backup_operation": retry_backup_operation,
    "escalate_to_dba": escalate_to_dba,
}
