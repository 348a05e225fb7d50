"""Steps the Helm chart runs in the cluster around an install (hook Jobs), in the orchestrator's image."""
