from .cli import main

if __name__ == "__main__":  # not when a rendering process (spawned) imports this module as its main's
    main()
