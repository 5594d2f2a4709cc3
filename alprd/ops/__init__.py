"""What operators and supervisors see: the HTTP status and metrics endpoints, the systemd
notification and watchdog protocol, and JSON log lines. Counts and states only, never plate text."""
