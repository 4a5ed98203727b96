import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a no-op unless frozen; see packaging/launch.py
    from app.cli import main

    main()
