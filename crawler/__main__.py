"""``python -m crawler``: the command line.

Process pools started with "spawn" re-import the parent's main module in every child unless
it is a package's ``__main__``; keeping the entry here means a parser process imports only
what parsing needs, not the whole CLI (about 20 MB less per process).
"""

from crawler.commands.entry import main

if __name__ == "__main__":
    main()
