"""Running targets on a schedule: the config file loader and the APScheduler daemon."""
