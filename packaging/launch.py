"""The bundle's entry point (PyInstaller): the `shoal` command, desktop app included.

`freeze_support()` first: the embedding model runs in a child process started with multiprocessing's spawn
method, which in a frozen app re-runs this executable; freeze_support turns that run into the child.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from app.cli import main

    main()
