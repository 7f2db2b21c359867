"""Cross-cutting parts used by every station: typed findings, PHI-safe descriptions, fault
injection for tests, Prometheus metrics, matplotlib figures. Nothing here imports the rest of the package."""
