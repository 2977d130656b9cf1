"""Ferry's worker: runs the declared steps of each job as Celery tasks. Importing it starts nothing."""
