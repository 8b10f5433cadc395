"""ingress-audit: a kube-apiserver audit webhook backend for the cluster's entry points."""

__version__ = "0.1.0.dev0"
