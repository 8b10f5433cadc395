"""HTTP access logs of the ingress controllers: the other half of ingress access.

The audit records say who changed the way in; access records say who came in through it.
"""
