"""Alerting: rules (rules.py) read from the snapshots (metrics.py) drive each alert through
pending -> firing -> resolved (lifecycle.py); alerts are kept in SQLite (store.py), announced
by the manager (manager.py) and served over HTTP (api.py)."""
