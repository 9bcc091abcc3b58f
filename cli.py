"""`python cli.py ...` runs the same command line as the installed `yolohand` script."""

from yolohand.cli import main

if __name__ == "__main__":
    main()
