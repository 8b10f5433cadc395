"""Who does what in a busy cluster: the callers and the requests the generator draws from.

Kubelets, kube-controller-manager's controllers, the scheduler, the apiserver itself, add-ons
and operators, with the identities, user agents and RBAC reasons they have in a real cluster
(service-account tokens bound to a pod carry its name and uid in ``user.extra``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["ACTIONS", "AGENT", "Actor", "actors", "uid"]

AGENT: Final = "{}/v1.26.0 (linux/amd64) kubernetes/b46a3f8"


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    groups: tuple[str, ...]
    agent: str
    reason: str  # the authorization.k8s.io/reason annotation
    uid: str = ""
    extra: dict[str, list[str]] | None = None  # bound service-account tokens name their pod


def _service_account(namespace: str, name: str, agent: str, *, pod: str | None = None) -> Actor:
    role = f"system:controller:{name}"
    rng = random.Random(name)  # noqa: S311 - a stable made-up uid per account
    extra = None
    if pod is not None:
        extra = {
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [uid(rng)],
        }
    return Actor(
        username=f"system:serviceaccount:{namespace}:{name}",
        groups=("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
        agent=agent,
        reason=f'RBAC: allowed by ClusterRoleBinding "{role}" of ClusterRole "{role}" '
        f'to ServiceAccount "{name}/{namespace}"',
        uid=uid(rng),
        extra=extra,
    )


def _kcm(controller: str) -> Actor:
    agent = AGENT.format("kube-controller-manager") + f"/system:serviceaccount:kube-system:{controller}"
    return _service_account("kube-system", controller, agent)


def actors(nodes: int) -> dict[str, list[Actor]]:
    kubelets = [
        Actor(
            f"system:node:node-{n:03d}",
            ("system:nodes", "system:authenticated"),
            AGENT.format("kubelet"),
            "",
        )
        for n in range(nodes)
    ]
    scheduler = Actor(
        "system:kube-scheduler",
        ("system:authenticated",),
        AGENT.format("kube-scheduler") + "/scheduler",
        'RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole '
        '"system:kube-scheduler" to User "system:kube-scheduler"',
    )
    return {
        "kubelet": kubelets,
        "controller": [
            _kcm(c)
            for c in (
                "endpoint-controller",
                "endpointslice-controller",
                "replicaset-controller",
                "deployment-controller",
                "daemon-set-controller",
                "node-controller",
                "generic-garbage-collector",
                "horizontal-pod-autoscaler",
            )
        ],
        "leader": [
            Actor(
                "system:kube-controller-manager",
                ("system:authenticated",),
                AGENT.format("kube-controller-manager") + "/leader-election",
                'RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole '
                '"system:kube-controller-manager" to User "system:kube-controller-manager"',
            ),
            scheduler,
        ],
        "scheduler": [scheduler],
        "apiserver": [
            Actor(
                "system:apiserver",
                ("system:masters",),
                AGENT.format("kube-apiserver"),
                "",
                uid="d28744a0-d8ae-4513-9272-4a8423163b5d",
            )
        ],
        "addon": [
            _service_account(
                "kube-system",
                "coredns",
                "coredns/v1.10.0 (linux/amd64) kubernetes/b46a3f8",
                pod="coredns-787d4945fb-x7lq9",
            ),
            _service_account(
                "ingress-nginx",
                "ingress-nginx",
                "nginx-ingress-controller/v1.6.4 (linux/amd64) ingress-nginx/9a6b3f0",
                pod="ingress-nginx-controller-6b94c75599-4kq2z",
            ),
            _service_account("monitoring", "prometheus", "Prometheus/2.42.0", pod="prometheus-k8s-0"),
            _service_account(
                "kube-system",
                "metrics-server",
                "metrics-server/v0.6.2 (linux/amd64) kubernetes/$Format",
                pod="metrics-server-5f9f776df5-r2d8m",
            ),
        ],
        "operator": [
            _service_account(
                "cert-manager",
                "cert-manager",
                "cert-manager/v1.11.0 (linux/amd64) cert-manager/2a0ef53b06e183356d922cd58af2510d8885bef5",
                pod="cert-manager-7d8f9c6b5-pq4vd",
            ),
            _service_account(
                "argocd",
                "argocd-application-controller",
                "argocd-application-controller/v2.6.3+e05298b (linux/amd64)",
                pod="argocd-application-controller-0",
            ),
            _service_account(
                "external-dns",
                "external-dns",
                "external-dns/v0.13.2 (linux/amd64)",
                pod="external-dns-6c8f7b9d44-bq2wn",
            ),
            _service_account(
                "kube-system",
                "cluster-autoscaler",
                "cluster-autoscaler/v1.26.1 (linux/amd64) kubernetes/b46a3f8",
                pod="cluster-autoscaler-5d4b8c7f69-mv2xh",
            ),
        ],
    }


# weight, actor kind, verb, resource, api group, subresource, namespaced
ACTIONS: Final = (
    (8, "kubelet", "update", "leases", "coordination.k8s.io", "", True),
    (4, "leader", "update", "leases", "coordination.k8s.io", "", True),
    (4, "leader", "get", "leases", "coordination.k8s.io", "", True),
    (6, "operator", "update", "leases", "coordination.k8s.io", "", True),
    (6, "operator", "get", "leases", "coordination.k8s.io", "", True),
    (5, "kubelet", "get", "pods", "", "", True),
    (5, "kubelet", "patch", "pods", "", "status", True),
    (4, "operator", "get", "pods", "", "", True),
    (3, "operator", "list", "pods", "", "", True),
    (4, "operator", "get", "configmaps", "", "", True),
    (2, "operator", "update", "configmaps", "", "", True),
    (3, "operator", "watch", "configmaps", "", "", False),
    (3, "operator", "create", "events", "", "", True),
    (3, "controller", "update", "pods", "", "", True),
    (2, "controller", "list", "pods", "", "", False),
    (4, "addon", "watch", "pods", "", "", False),
    (5, "kubelet", "create", "events", "", "", True),
    (3, "controller", "patch", "events", "", "", True),
    (2, "scheduler", "create", "events", "events.k8s.io", "", True),
    (4, "kubelet", "get", "configmaps", "", "", True),
    (4, "kubelet", "watch", "configmaps", "", "", True),
    (2, "addon", "list", "configmaps", "", "", True),
    (2, "leader", "update", "configmaps", "", "", True),
    (3, "apiserver", "get", "endpoints", "", "", True),
    (4, "controller", "update", "endpoints", "", "", True),
    (2, "addon", "watch", "endpoints", "", "", False),
    (3, "controller", "update", "endpointslices", "discovery.k8s.io", "", True),
    (2, "addon", "list", "endpointslices", "discovery.k8s.io", "", False),
    (3, "kubelet", "get", "nodes", "", "", False),
    (3, "kubelet", "patch", "nodes", "", "status", False),
    (1, "controller", "watch", "nodes", "", "", False),
    (2, "kubelet", "create", "serviceaccounts", "", "token", True),
    (2, "apiserver", "get", "services", "", "", True),
    (1, "addon", "watch", "services", "", "", False),
    (1, "scheduler", "create", "pods", "", "binding", True),
    (2, "controller", "update", "replicasets", "apps", "status", True),
    (1, "controller", "update", "deployments", "apps", "status", True),
)


def uid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
