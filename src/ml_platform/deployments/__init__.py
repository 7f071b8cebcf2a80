"""Deployments: which model version serves under which name, and what serving observed."""
