"""Detections over the record stream: rules, bounded windows, the engine and its alert records.

``settings`` (the config section), ``windows`` (bounded per-key windows), ``rules`` (the rule
interface), ``fields`` (reading audit records), ``audit`` and ``drift`` (the detections),
``engine`` (``Detector``: firing and resolving), ``alert`` (the record), ``feed`` (from the
ingest path to the spool). See docs/detections.md.
"""
