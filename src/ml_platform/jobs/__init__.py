"""Training jobs: the service, the scheduler and the executors."""
