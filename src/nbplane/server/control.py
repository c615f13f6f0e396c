"""The control loops of a server (``--role control`` or ``all``): the deployments' and the
sessions' reconcilers, run under the control lease so that one replica of the cluster runs them.
"""

from __future__ import annotations

from nbplane.deployments.reconciler import DeploymentReconciler
from nbplane.deployments.service import DeploymentService
from nbplane.platform.lease import CONTROL_LEASE, Lease, LeasedLoops, Loops, replica_name
from nbplane.sessions.reconciler import SessionReconciler
from nbplane.sessions.service import SessionService
from nbplane.settings import Settings
from nbplane.store import Store
from nbplane.store.leases import DatabaseLease


def control_lease(settings: Settings, store: Store) -> Lease:
    """A Kubernetes Lease when jobs or sessions run on Kubernetes (replicas are pods there, and
    the Lease is what the cluster's tools show), the database's ``leases`` table otherwise."""
    holder = replica_name()
    duration = settings.lease_duration_seconds
    if "kubernetes" in (settings.job_executor, settings.session_launcher):
        from nbplane.platform.kube_lease import KubernetesLease

        return KubernetesLease(
            settings.kubernetes_namespace, CONTROL_LEASE, holder, duration, settings.kubeconfig
        )
    return DatabaseLease(store.leases, CONTROL_LEASE, holder, duration)


def control_loops(
    deployments: DeploymentService, sessions: SessionService, lease: Lease, settings: Settings
) -> LeasedLoops:
    def make() -> list[Loops]:
        return [DeploymentReconciler(deployments), SessionReconciler(sessions.lifecycle)]

    return LeasedLoops(lease, make, settings.lease_renew_seconds)
