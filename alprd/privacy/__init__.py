"""Privacy by construction: the agency's policy, the unit key, minimisation, retention, the audit log
and the one audited way to read local data out."""
