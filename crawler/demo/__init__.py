"""Local stand-ins for the outside world, for the demo, tests and benchmarks: the sample site,
its takedown switches and a vantage proxy. They import nothing else of the package."""
