"""Alerting: rules (rules.py) read from the snapshots (metric_paths.py) drive each alert through
pending -> firing -> resolved (lifecycle.py); alerts are kept in a store (SQLite in store.py, or
Redis in a cluster, redis_store.py) and appended to the event log by the manager
(manager.py). The edge serves them (web/alert_api.py)."""
