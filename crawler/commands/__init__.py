"""The command line: argument parsing, progress display, and one call per command. No business
logic lives here; each command maps a lower layer's result to output and an exit code."""
