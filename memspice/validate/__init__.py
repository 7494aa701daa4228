"""Cross-validation of the torch solver against ngspice: metrics, cases, reports."""
